"""Starting a job from outside: the CLI, cluster descriptions, the exact torchrun / deepspeed /
sbatch commands, the rendezvous check and supervision.  No torch here: nothing in this room
runs inside a process group."""
