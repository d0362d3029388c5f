"""One HDR round under `accelerate launch` (e.g. DeepSpeed ZeRO-3 on 2 CPU ranks): each rank writes what it generated
(completion lengths of its own shard) and the records HDR accepted (used by test_engines)."""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from balancetrl.generation import TransformersGeneration  # noqa: E402
from hdr_run import build  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--report", required=True, help="folder for rank<N>.json")
    opts = parser.parse_args()
    lengths = []
    generate_batch = TransformersGeneration._generate_batch

    def recording(self, *args, **kwargs):  # one generate call of this rank: how long each completion ran
        rows = generate_batch(self, *args, **kwargs)
        lengths.append([[c.completion_tokens for c in row] for row in rows])
        return rows

    TransformersGeneration._generate_batch = recording
    trainer = build(opts.output_dir, opts.model_dir, judges=[], max_rounds=1, per_device_train_batch_size=1,
                    max_new_tokens=96, generation_batch_size=1)
    trainer.train()
    rank = trainer.accelerator.process_index
    Path(opts.report, f"rank{rank}.json").write_text(json.dumps({
        "engine": trainer.engine["engine"], "lengths": lengths, "global_step": trainer.state.global_step,
        "accepted": trainer._hdr.accepted[1], "still_hard": [h.id for h in trainer._hdr.hard],
        "lambda": trainer.ssb_lambda, "world": int(os.environ.get("WORLD_SIZE", 1)),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
