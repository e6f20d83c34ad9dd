"""A CPU-sized IsoFLOP sweep (Chinchilla's approach 2): 3 compute budgets x 3 decoder widths of the tiny
config, each point trained for D = C / (6 N) tokens, so every budget has 3 model sizes to fit a parabola.

    pegasus-jax scaling sweep --sweep configs/scaling/tiny_isoflop.py --workdir runs/tiny_isoflop --dry-run
    pegasus-jax scaling sweep --sweep configs/scaling/tiny_isoflop.py --workdir runs/tiny_isoflop
    pegasus-jax scaling fit runs/tiny_isoflop/runs.jsonl --out runs/tiny_isoflop/fit.json --plots runs/tiny_isoflop

Budgets a factor 2 apart (0.3 in log10, beyond the fit's 0.1 grouping tolerance). Steps come from the
padded sequence length; the real tokens (text padding left out) fall short of it by about the same
factor at every width, so a budget's points keep one C between them.
"""
from configs.scaling.tiny_sweep import get_sweep as tiny_sweep


def get_sweep():
    s = tiny_sweep()
    s.name = "tiny_isoflop"
    s.widths = (32, 64, 96)
    s.budgets = (2.5e10, 5e10, 1e11)
    return s
