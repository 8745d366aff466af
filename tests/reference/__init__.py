"""Independent plain-PyTorch oracles for the networks dasc must reproduce.

Why this package exists: `DESIGN.md` promises that a DARTS genotype derived from `darts.das` at
C=36 / 20 layers is *the very network of the reference code*, and that `nb201.das` is likewise
faithful to NAS-Bench-201. To test that promise we need a second implementation that shares no
code with dasc: these modules are written directly from the papers' definitions (and the
published reference code's documented behaviour), use nothing but `torch.nn`, and never import
`dasc`. Tests compare dasc's derived networks (parameters, MACs, outputs) against them.

Public API:

* `darts_eval.Genotype`, `parse_genotype(text)`, `format_genotype(g)`,
  `build_darts_network(genotype, C=36, layers=20, classes=10, auxiliary=False)`,
  `load_genotype_file(path)`
* `nb201.parse_nb201(text)`, `format_nb201(arch)`,
  `build_nb201_network(arch, C=16, N=5, classes=10)`
* `macs.count_params(model)`, `macs.count_macs(model, input_shape=(3, 32, 32))`,
  `macs.macs_by_module(model, input_shape)`
* `GENOTYPE_DIR`: the shipped genotype files (`spaces/genotypes/`).
"""
from pathlib import Path

GENOTYPE_DIR = Path(__file__).resolve().parents[2] / "spaces" / "genotypes"
