"""Work done once, on the global main process, with its result sent to every rank."""

from __future__ import annotations


def on_main_process(fn, *args):
    """`fn(*args)` run on the global main process alone, its result (or its error) sent to every rank.

    Results travel through torch.distributed, not the filesystem, so the nodes of a multi-node run need no shared
    filesystem: only the main node reads the data and writes `output_dir/data/`, and only it asks the HDR judges.
    An error on the main process is raised on every rank instead of leaving the others waiting in the broadcast.
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    payload, failure = [None], None
    if state.is_main_process:
        try:
            payload = [("result", fn(*args))]
        except Exception as e:  # sent on, or the other ranks would wait for the broadcast forever
            failure, payload = e, [("error", f"{type(e).__name__}: {e}")]
    broadcast_object_list(payload, from_process=0)
    kind, value = payload[0]
    if failure is not None:
        raise failure
    if kind == "error":
        raise RuntimeError(f"failed on the main process: {value}")
    return value
