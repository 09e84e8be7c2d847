"""``facetrain``: a face checkpoint put to use, without training.

    facetrain evaluate CHECKPOINT [--on FOLDER[:SPLIT],...] [--out DIR] [--allow-incomplete]
    facetrain embed CHECKPOINT FOLDER --out DIR [--gallery FOLDER] [--top K] [--batch-size N]
    facetrain export-onnx CHECKPOINT OUT.onnx

CHECKPOINT is a checkpoint folder (RUN_DIR/checkpoints/stepNNNNNNNN) or a run directory (its newest
complete checkpoint); the network, image size and flip test come from the config.yaml saved in it,
the face geometry (the canvas images are brought to) as the checkpoint recorded it.
``evaluate`` runs in one process or on every rank of ``torchrun --nproc-per-node N -m facetrain
evaluate ...``.  A mistake in the inputs is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch.distributed as torch_dist

from facetrain.checkpoint_eval import evaluate_sets, evaluation_sets, format_results, write_outputs
from facetrain.checkpoint_model import face_checkpoint
from facetrain.embed import embed_folder, write_nearest
from facetrain.onnx_export import CHECK_BATCH, OPSET, ParityError, export_onnx
from launcher.errors import JobError
from launcher.runtime.dist import init_distributed
from launcher.runtime.logs import setup_logging
from shards.files import write_json_atomic


def folder_list(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="facetrain", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    e = commands.add_parser("evaluate", help="verification figures of a checkpoint on shard folders")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--on", type=folder_list, default=[], metavar="FOLDER[:SPLIT],...",
                   help="shard folders: with their own pairs (insightface-bin, lfw-pairs builds), or a split to draw "
                        "pairs from (default: the config's eval_split); default: the sets the run evaluated")
    e.add_argument("--out", type=Path, help="results.json and ROC plots (default: CHECKPOINT/evaluation)")
    e.add_argument("--allow-incomplete", action="store_true",
                   help="score what can be read when shards are missing or images undecodable (counted)")
    m = commands.add_parser("embed", help="embeddings of every image in a folder, and nearest gallery identities")
    m.add_argument("checkpoint", type=Path)
    m.add_argument("folder", type=Path, help="images, found recursively, any format PIL reads")
    m.add_argument("--out", type=Path, required=True, help="embeddings.npy, index.json (and nearest.csv) go here")
    m.add_argument("--gallery", type=Path, help="a folder of <identity>/<images>")
    m.add_argument("--top", type=int, default=5, help="nearest identities per image (with --gallery)")
    m.add_argument("--batch-size", type=int, default=64)
    x = commands.add_parser("export-onnx", help="the embedding network as ONNX, checked against PyTorch")
    x.add_argument("checkpoint", type=Path)
    x.add_argument("out", type=Path, help="the .onnx file (its report goes to OUT.json)")
    return root


def evaluate(args: argparse.Namespace) -> int:
    checkpoint = face_checkpoint(args.checkpoint, "evaluate")
    if args.allow_incomplete:
        checkpoint = replace(checkpoint, config=replace(checkpoint.config, eval_allow_incomplete=True))
    # every mistake in the inputs before the weights load
    sets = evaluation_sets(args.on, checkpoint.config, checkpoint.geometry)
    network = checkpoint.load_network()
    out = args.out or checkpoint.path / "evaluation"
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints the ops it builds; stdout has the table
        dist = init_distributed()
    setup_logging(dist.rank)
    try:
        results, metrics = evaluate_sets(checkpoint, network, sets, dist, out)
        if dist.is_main:
            write_outputs(checkpoint, sets, results, metrics, dist.world_size, out)
            print(f"{checkpoint.path} (step {checkpoint.step}), {dist.world_size} process(es), flip test "
                  f"{'on' if checkpoint.config.flip_test else 'off'}\n{format_results(results, sets, metrics)}\n"
                  f"results: {out / 'results.json'}; ROC: {out / 'roc.png'}", flush=True)
    finally:
        torch_dist.destroy_process_group()
    return 0


def embed(args: argparse.Namespace) -> int:
    for folder in filter(None, (args.folder, args.gallery)):
        if not folder.is_dir():
            raise JobError(f"embed: {folder} is not a folder")
    if args.top < 1 or args.batch_size < 1:
        raise JobError(f"embed: --top and --batch-size must be at least 1, got {args.top}, {args.batch_size}")
    checkpoint = face_checkpoint(args.checkpoint, "embed")
    network = checkpoint.load_network()
    queries = embed_folder(checkpoint, network, args.folder, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "embeddings.npy", queries.embeddings)
    index = {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "folder": str(args.folder),
             "flip_test": checkpoint.config.flip_test, "images": queries.paths, "skipped": queries.skipped}
    if args.gallery:
        gallery = embed_folder(checkpoint, network, args.gallery, args.batch_size)
        index["gallery"] = {"folder": str(args.gallery),
                            **write_nearest(args.out / "nearest.csv", queries, gallery, args.top)}
    write_json_atomic(args.out / "index.json", index, indent=2)
    print(f"{len(queries.paths)} images embedded ({queries.embeddings.shape[1]} dimensions), "
          f"{len(queries.skipped)} skipped (listed in index.json), in {args.out}"
          + (f"; nearest of {index['gallery']['identities']} gallery identities in nearest.csv" if args.gallery
             else ""))
    return 0


def export(args: argparse.Namespace) -> int:
    checkpoint = face_checkpoint(args.checkpoint, "export-onnx")
    report = export_onnx(checkpoint, checkpoint.load_network(), args.out)
    print(f"wrote {args.out} (opset {OPSET}, dynamic batch); onnxruntime against PyTorch on a batch of {CHECK_BATCH}: "
          f"max abs diff {report['parity']['max_abs_diff']:.2e}")
    return 0


COMMANDS = {"evaluate": evaluate, "embed": embed, "export-onnx": export}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:  # not the user's to fix: a failure, not a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 1
