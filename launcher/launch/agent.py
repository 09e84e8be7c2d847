"""torchrun's agent (``torch.distributed.run``), run by ``launch`` with its rendezvous failures
said in one line.

Left to itself, an agent whose nodes do not all arrive (a node never started, started with
another endpoint or too late) ends in a 40-line traceback ending in ``RendezvousTimeoutError``,
or in a TCPStore timeout with a static rendezvous. The agent prints one line instead and exits
with ``RENDEZVOUS_FAILED``, and ``launch`` adds how to continue (no rank failed, so no failure
summary). Everything else is torchrun's own behaviour: the same arguments, the same exit codes.
"""

from __future__ import annotations

import sys

AGENT_MODULE = "launcher.launch.agent"
"""What ``launch`` and the SLURM script run as torchrun (``python -m AGENT_MODULE ...``)."""

RENDEZVOUS_FAILED = 3
"""Exit code of an agent whose rendezvous did not complete (torchrun itself exits 1 on failures)."""


def rendezvous_failure(args, error: BaseException) -> str | None:
    """The line for a rendezvous that did not complete, or None for any other error."""
    from torch.distributed import DistStoreError
    from torch.distributed.elastic.rendezvous.api import RendezvousTimeoutError

    if args.standalone:
        return None
    static = args.rdzv_backend == "static"
    endpoint = f"{args.master_addr}:{args.master_port}" if static else args.rdzv_endpoint
    start_all = (f"start launch on every node with the same config, --nnodes {args.nnodes} and "
                 f"{'--node-rank 0..' + str(int(args.nnodes) - 1) if static else '--rdzv-endpoint ' + endpoint}")
    # A static rendezvous waits in node 0's TCPStore, whose timeout is a DistStoreError.
    if isinstance(error, RendezvousTimeoutError) or (static and isinstance(error, DistStoreError)):
        return (f"launch: the rendezvous at {endpoint} timed out: not all {args.nnodes} nodes joined in time; "
                f"{start_all} (cluster.rdzv_timeout_s sets how long to wait)")
    return None


def main(argv: list[str] | None = None) -> int:
    import torch.distributed.run as torchrun

    argv = sys.argv[1:] if argv is None else argv
    args = torchrun.parse_args(argv)
    try:
        torchrun.main(argv)
    except Exception as error:  # anything but a rendezvous failure is re-raised, as torchrun would
        line = rendezvous_failure(args, error)
        if line is None:
            raise
        print(line, file=sys.stderr, flush=True)
        return RENDEZVOUS_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
