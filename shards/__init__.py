"""Datasets as WebDataset tar shards: building, verifying and streaming them."""
