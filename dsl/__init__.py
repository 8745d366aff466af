"""The `.das` language: grammar, AST, parser, canonical printer and file loader.

Public entry points: `parse` (text -> `ast.Module`), `format_module` (AST -> canonical text),
`load_space` (a file with its includes resolved).
"""
