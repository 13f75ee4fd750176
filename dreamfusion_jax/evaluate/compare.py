r"""Paired comparison of benchmark configs: each against a reference, on the runs both finished.

  python -m dreamfusion_jax.evaluate.compare shipped='runs/ref_*.log' cfg15='runs/cfg15_*.log' ...

Each argument is NAME=GLOB: the text files (evaluate's logs, or results*.json rows) holding one
config's rows, the JSON lines evaluate prints after each run ('{"method": ...}'). The first is the
reference. A benchmark cut by a time box finishes different runs under different configs, so every
mean is over the (method, prompt, seed) runs that every config finished; per seed too, since a seed's
runs move together (docs/benchmark.md: a single run forks by ~0.1, the mean of 12 by ~0.01). Prints
one row per config: the runs compared, IoU / geo / colour / haze means, the IoU per seed, its mean
difference from the reference with the paired runs' standard error, on how many runs it was
higher / lower (by more than 0.01), and where the objects sit: the IoU at the best position and the
mean length of that move (geometry.best_position_iou; "-" when a row was saved before it was scored).
"""

import glob
import json
import sys

import numpy as np

COLUMNS = ("iou", "r_geo", "r_color", "haze")
TIE = 0.01  # an IoU within this of the reference's counts as neither higher nor lower


def position_means(rows) -> tuple:
  """(mean IoU at the best position, mean length of the move over the non-empty runs), each None
  unless every row holds it (rows saved before they were scored lack it). evaluate's table uses it too."""
  placed = [r.get("iou_best_position") for r in rows]
  if not rows or any(p is None for p in placed):
    return None, None
  offsets = [float(np.linalg.norm(r["offset"])) for r in rows if r.get("offset") is not None]
  return float(np.mean(placed)), (float(np.mean(offsets)) if offsets else None)


def read_rows(pattern: str) -> dict:
  """{(method, prompt, seed): row} from the JSON lines of the files `pattern` matches; a run seen
  twice keeps its last row. Raises ValueError if nothing matches or no file holds a row."""
  paths = sorted(glob.glob(pattern))
  if not paths:
    raise ValueError(f"no file matches {pattern!r}")
  rows = {}
  for path in paths:
    with open(path) as f:
      for line in f:
        line = line.strip()
        if not line.startswith('{"method"'):
          continue
        row = json.loads(line)
        rows[(row["method"], row["prompt"], int(row["seed"]))] = row
  if not rows:
    raise ValueError(f"no benchmark rows ('{{\"method\": ...}}' lines) in {paths}")
  return rows


def parse_args(argv) -> list:
  """[(name, pattern)] from NAME=GLOB arguments; raises ValueError naming a malformed one."""
  pairs = []
  for arg in argv:
    name, sep, pattern = arg.partition("=")
    if not sep or not name or not pattern:
      raise ValueError(f"each argument reads NAME=GLOB (the first the reference), got {arg!r}")
    pairs.append((name, pattern))
  if len(pairs) < 2:
    raise ValueError("give a reference and at least one config to compare: NAME=GLOB NAME=GLOB ...")
  return pairs


def compare(configs: dict) -> list:
  """One dict per config (the first the reference) over the runs every config finished.

  configs: {name: {(method, prompt, seed): row}}, in order, the reference first.
  """
  common = sorted(set.intersection(*(set(r) for r in configs.values())))
  if not common:
    raise ValueError("the configs share no finished run")
  seeds = sorted({s for _, _, s in common})
  names = list(configs)
  ref = np.array([configs[names[0]][k]["iou"] for k in common])
  out = []
  for name in names:
    rows = [configs[name][k] for k in common]
    iou = np.array([r["iou"] for r in rows])
    diff = iou - ref
    iou_pos, offset = position_means(rows)
    out.append(dict(
        name=name, runs=len(common),
        **{c: float(np.mean([r[c] for r in rows])) for c in COLUMNS},
        per_seed={s: float(np.mean([r["iou"] for k, r in zip(common, rows) if k[2] == s])) for s in seeds},
        diff=float(diff.mean()),
        diff_se=float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
        higher=int((diff > TIE).sum()), lower=int((diff < -TIE).sum()), iou_pos=iou_pos, offset=offset))
  return out


def format_table(results: list) -> str:
  seeds = list(results[0]["per_seed"])
  head = ["config", "runs", *COLUMNS, *(f"iou s{s}" for s in seeds), "d_iou", "+-se", "higher", "lower",
          "iou at best position", "offset"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in results:
    cells = [r["name"], str(r["runs"]), *(f"{r[c]:.3f}" for c in COLUMNS),
             *(f"{r['per_seed'][s]:.3f}" for s in seeds), f"{r['diff']:+.3f}", f"{r['diff_se']:.3f}",
             str(r["higher"]), str(r["lower"]),
             *("-" if r[c] is None else f"{r[c]:.3f}" for c in ("iou_pos", "offset"))]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv) -> int:
  try:
    pairs = parse_args(argv)
    configs = {name: read_rows(pattern) for name, pattern in pairs}
    print(format_table(compare(configs)))
  except ValueError as e:
    print(f"compare: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
