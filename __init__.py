"""dasc: a compiler for differentiable neural-architecture search spaces.

The package root is the repository root so that the pipeline stages stay top-level folders
(`dsl/`, `compiler/`, `runtime/`) while installing as one importable package.
"""

__version__ = "0.1.0"
