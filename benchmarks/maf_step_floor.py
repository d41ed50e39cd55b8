"""What a MAF training step is made of: the step against the matrix products it cannot avoid, beside zuko's step.

    .venv/bin/python benchmarks/maf_step_floor.py [--dims 2 16 64] [--threads 1] [--batch 1024] [--rounds 15]
        [--compile]

For each dimension, timed interleaved over ``--rounds`` rounds (medians reported), with the architecture of
``density_speed.py`` (5 MAF layers, MADEs of 2×64 ReLU units, torch's default Adam for both libraries):

* ``step``: tractable's training step (log_prob of a batch, backward, Adam);
* ``zuko``: zuko's step, the fastest peer of the speed table for MAF (skipped when zuko is not on ``--peer-path``);
* ``adam``: torch's default Adam stepping the same parameters alone (one loop over them, several kernels each);
* ``compiled`` (with ``--compile``): the step with tractable's ``log_prob`` under ``torch.compile``;
* ``products``: only the dense matrix products such a step multiplies, with the MADEs' own shapes: for every linear
  layer the forward product, the weight's gradient and the input's gradient (except for the very first layer,
  whose input, the data, wants none), on random tensors, each in the layout tractable's step uses.

Every MAF library multiplies these products densely (the masked half of each weight is zero but still multiplied), so
``products + adam`` is a floor for every library's step with that optimizer on this machine: the table gives the
largest ratio to zuko that a step doing nothing else would reach (``zuko / (products + Adam)``), and tractable's step
split into the products, Adam and the rest (the maps, activations, biases, masks, log-determinants and autograd).
Results go to benchmarks/results/maf_step_floor.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import density_speed as ds  # the builders and architecture of the speed table


def product_shapes(flow: torch.nn.Module, batch: int) -> list[tuple[tuple[int, int], tuple[int, int], bool]]:
    """``(x shape, weight shape, wants the input's gradient)`` of every linear layer of the flow's MADEs."""
    from tractable.nn.made import MADE

    shapes = []
    for k, made in enumerate(m for m in flow.modules() if isinstance(m, MADE)):
        for j, layer in enumerate(made.layers):
            out_f, in_f = layer.weight.shape
            shapes.append(((batch, in_f), (out_f, in_f), not (k == 0 and j == 0)))
    return shapes


def products_fn(shapes):
    tensors = [(torch.randn(*x), torch.randn(*w), torch.randn(x[0], w[0]), grad_in) for x, w, grad_in in shapes]

    def run():
        for x, w, g, grad_in in tensors:
            x.mm(w.t())  # forward
            g.t().mm(x)  # the weight's gradient
            if grad_in:
                g.mm(w)  # the input's gradient

    return run


def adam_fn(flow: torch.nn.Module):
    """torch's default Adam stepping the flow's parameters, their gradients in place (random)."""
    params = [p.detach().clone().requires_grad_() for p in flow.parameters()]
    for p in params:
        p.grad = torch.randn_like(p)
    return torch.optim.Adam(params, lr=1e-3).step


def step_fn(flow, log_prob, d: int, batch: int):
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    x = torch.randn(batch, d)

    def run():
        opt.zero_grad(set_to_none=True)
        (-log_prob(x).mean()).backward()
        opt.step()

    return run


def measure(d: int, batch: int, rounds: int, calls: int, zuko: bool, compiled: bool) -> dict:
    torch.manual_seed(0)
    flow, log_prob, _ = ds.tractable_model("maf", d)
    fns = {"step": step_fn(flow, log_prob, d, batch), "products": products_fn(product_shapes(flow, batch)),
           "adam": adam_fn(flow)}
    if compiled:
        torch.manual_seed(0)
        c_flow, c_log_prob, _ = ds.tractable_model("maf", d)
        fns["compiled"] = step_fn(c_flow, torch.compile(c_log_prob), d, batch)
    if zuko:
        z_flow, z_log_prob, _ = ds.zuko_model("maf", d)
        fns["zuko"] = step_fn(z_flow, z_log_prob, d, batch)
    for fn in fns.values():  # warm up: allocator, Adam's state
        ds.time_ms(fn, 10)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(ds.time_ms(fn, calls)[0])
    return {name: statistics.median(v) for name, v in times.items()} | {"d": d}


def table(rows: list[dict], setup: str) -> str:
    header = ("| d | step ms | products ms | Adam ms | rest ms | compiled step ms | zuko ms | zuko / step | "
              "zuko / compiled | zuko / (products + Adam) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [setup, "", header]
    for r in rows:
        z = r.get("zuko")
        floor, c = r["products"] + r["adam"], r.get("compiled")
        cs = f"{c:.2f}" if c else "—"
        zs = (f"{z:.2f} | {z / r['step']:.2f} | {z / c:.2f} | {z / floor:.2f}" if c else
              f"{z:.2f} | {z / r['step']:.2f} | — | {z / floor:.2f}") if z else "— | — | — | —"
        lines.append(f"| {r['d']} | {r['step']:.2f} | {r['products']:.2f} | {r['adam']:.2f} | "
                     f"{r['step'] - floor:.2f} | {cs} | {zs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10, help="calls per timing")
    parser.add_argument("--compile", action="store_true", help="also time the step with log_prob compiled")
    parser.add_argument("--peer-path", default="/tmp/peerlibs")
    parser.add_argument("--out", default="maf_step_floor")
    args = parser.parse_args()
    if args.threads < 1 or args.batch < 1 or args.rounds < 1 or args.calls < 1:
        parser.error(f"expected threads, batch, rounds, calls >= 1, got {args.threads}, {args.batch}, "
                     f"{args.rounds}, {args.calls}")
    sys.path.append(args.peer_path)
    torch.set_num_threads(args.threads)
    zuko = ds.available("zuko")
    rows = []
    for d in args.dims:
        rows.append(measure(d, args.batch, args.rounds, args.calls, zuko, args.compile))
        print(json.dumps(rows[-1]), flush=True)
    setup = (f"torch {torch.__version__}; {args.threads} thread(s), batch {args.batch}; medians of {args.rounds} "
             f"interleaved rounds of {args.calls} calls; torch's default Adam for both libraries")
    text = table(rows, setup)
    print(text)
    ds.RESULTS.mkdir(exist_ok=True)
    (ds.RESULTS / f"{args.out}.md").write_text(text)
    (ds.RESULTS / f"{args.out}.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
