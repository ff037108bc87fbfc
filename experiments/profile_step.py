"""Where a training step's time goes on this machine, by class of operation.

python experiments/profile_step.py [--config=...] [--config.KEY=VALUE ...] [--iterations=20]

Runs the real training step under jax's profiler, then charges every XLA operation the
profiler timed (a thunk: a fusion, a dot, a copy) to one class, by what its HLO holds:

  matmuls and convolutions   a dot or a convolution
  random numbers             jax.random's bits, threefry, the normal's erf_inv
  batch sampling, gathers    inside the step's `sample_batches` scope
  Adam and EMA updates       inside the `adam` and `ema` scopes (with what XLA fused into them)
  im2col, layout copies      data movement only: slices, pads, concatenations, transposes, copies
  elementwise                everything else: activations, weight and batch norm, losses

The last line printed is one JSON object: milliseconds per step and the share of each class.
"""

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from sgan_jax.runs import cli, sharding  # noqa: E402
from sgan_jax.training import benchmark  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "sgan_mnist.py")
flags.DEFINE_integer("iterations", 20, "Profiled iterations (after 3 untimed ones).")
cli.define_config_flag(_DEFAULT_CONFIG)

CLASSES = (
    "matmuls and convolutions",
    "random numbers",
    "batch sampling, gathers",
    "Adam and EMA updates",
    "im2col, layout copies",
    "elementwise",
)
_MOVEMENT = {"slice", "pad", "concatenate", "transpose", "copy", "reshape", "bitcast", "broadcast"}
_MOVEMENT |= {"parameter", "constant", "tuple", "get-tuple-element", "dynamic-slice"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*? ([\w\-]+)\(")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def parse_hlo(text: str) -> tuple[dict, dict]:
    """{instruction: (opcode, called computations, op_name)} and {computation: instructions}."""
    instructions, computations, current = {}, collections.defaultdict(list), None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+) .*\{$", line)
        if header and "=" not in line.split("{")[0]:
            current = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if match and current:
            op_name = _OP_NAME.search(line)
            instructions[match.group(1)] = (
                match.group(2),
                _CALLS.findall(line),
                op_name.group(1) if op_name else "",
            )
            computations[current].append(match.group(1))
    return instructions, computations


def contents(name: str, instructions: dict, computations: dict) -> tuple[set, str]:
    """The opcodes and the joined op_names of an instruction and everything it calls."""
    opcodes, names, todo, seen = set(), [], [name], set()
    while todo:
        item = todo.pop()
        if item in seen or item not in instructions:
            continue
        seen.add(item)
        opcode, called, op_name = instructions[item]
        opcodes.add(opcode)
        names.append(op_name)
        for computation in called:
            todo.extend(computations.get(computation, []))
    return opcodes, " ".join(names)


def classify(opcodes: set, op_names: str) -> str:
    if opcodes & {"dot", "convolution"}:
        return CLASSES[0]
    if re.search(r"random_bits|threefry|erf_inv|random_", op_names):
        return CLASSES[1]
    if "sample_batches" in op_names:
        return CLASSES[2]
    if re.search(r"[(/](adam|ema)[)/]", op_names):
        return CLASSES[3]
    if opcodes <= _MOVEMENT:
        return CLASSES[4]
    return CLASSES[5]


def _profile(config, iterations: int) -> dict:
    compiled = benchmark._programs(config, sharding.make_mesh(config.num_devices))
    hlo = compiled.compiled_step_text()
    instructions, computations = parse_hlo(hlo)
    for step in range(3):
        compiled.train(step, 1)
    jax.block_until_ready(compiled.state)
    trace_dir = tempfile.mkdtemp(prefix="sgan_profile_")
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    for step in range(3, 3 + iterations):
        compiled.train(step, 1)
    jax.block_until_ready(compiled.state)
    jax.profiler.stop_trace()
    path = sorted(glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True))[-1]
    trace = json.load(gzip.open(path))
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    seconds = collections.Counter()
    for event in events:
        name = event.get("name", "")
        opcode = instructions.get(name, ("",))[0]
        if event.get("ph") != "X" or name not in instructions or opcode in ("while", "call"):
            continue  # Python frames, the executor, and loops whose bodies are timed themselves
        seconds[classify(*contents(name, instructions, computations))] += event["dur"] / 1e6
    total = sum(seconds.values())
    return dict(
        ms_per_step=1e3 * total / iterations,
        share={c: seconds[c] / total for c in CLASSES},
        ms={c: 1e3 * seconds[c] / iterations for c in CLASSES},
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_library_logs()
    result = _profile(flags.FLAGS.config, flags.FLAGS.iterations)
    print(f"{'class':28s} {'ms/step':>9s} {'share':>7s}")
    for name in CLASSES:
        print(f"{name:28s} {result['ms'][name]:9.1f} {100 * result['share'][name]:6.1f}%")
    print(f"{'operations timed, in all':28s} {result['ms_per_step']:9.1f}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
