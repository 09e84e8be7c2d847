"""A shard folder built before an option existed keeps its fingerprint: rebuilding it with the
same command resumes (keeps its shards) instead of refusing the folder as another build's."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from shards.options import ADDED_LATER, BuildOptions

FIRST_RELEASE = {"format", "src", "size", "quality", "align", "template", "unaligned", "maxcount", "maxsize",
                 "split", "seed", "limit", "attributes"}
"""The options the first shard folders' fingerprints were made of."""
NOT_IN_THE_FINGERPRINT = {"out", "workers"}  # where and how fast, not what


def test_every_later_option_is_left_out_of_the_fingerprint_at_its_default():
    defaults = {f.name: f.default for f in fields(BuildOptions)}
    later = defaults.keys() - FIRST_RELEASE - NOT_IN_THE_FINGERPRINT
    assert {name: ADDED_LATER.get(name, "not registered") for name in later} == {name: defaults[name] for name in later}
    options = BuildOptions(format="casia-webface", src=Path("in"), out=Path("out"))
    assert set(options.fingerprint_fields()) == FIRST_RELEASE


def test_a_later_option_away_from_its_default_changes_the_fingerprint():
    options = BuildOptions(format="casia-webface", src=Path("in"), out=Path("out"), min_size=8, pairs="val=all")
    assert options.fingerprint_fields()["min_size"] == 8 and options.fingerprint_fields()["pairs"] == "val=all"
