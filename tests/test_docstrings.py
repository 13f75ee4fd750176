"""The usage lines in module docstrings are what --help prints: they must survive as written."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dreamfusion_jax"


def _docstring_literals(path: pathlib.Path):
  """(name, source text, value) of every module, class and function docstring in `path`."""
  source = path.read_text()
  tree = ast.parse(source)
  nodes = [tree] + [n for n in ast.walk(tree)
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
  for node in nodes:
    value = ast.get_docstring(node, clean=False)
    if value is not None:
      yield getattr(node, "name", "<module>"), ast.get_source_segment(source, node.body[0].value), value


def _joined_continuations(path: pathlib.Path):
  """Docstrings whose shell line continuations ("\\" at a line's end) Python joins away (not raw)."""
  return [name for name, text, value in _docstring_literals(path) if "\\\n" in text and "\\\n" not in value]


def test_the_check_sees_a_joined_continuation(tmp_path):
  # The control: a plain docstring with a continued command line loses it; a raw one keeps it.
  plain = tmp_path / "plain.py"
  plain.write_text('"""Run:\n\n  python -m x --a 1 \\\n      --b 2\n"""\n')
  raw = tmp_path / "raw.py"
  raw.write_text('r"""Run:\n\n  python -m x --a 1 \\\n      --b 2\n"""\n')
  assert _joined_continuations(plain) == ["<module>"]
  assert _joined_continuations(raw) == []


def test_usage_lines_keep_their_continuations():
  # argparse prints a module docstring under RawTextHelpFormatter as it is: in a non-raw string the
  # backslash-newline of a continued command disappears and "--help" shows two lines run into one.
  found = {str(p.relative_to(PACKAGE)): names for p in sorted(PACKAGE.rglob("*.py"))
           if (names := _joined_continuations(p))}
  assert found == {}, "make these docstrings raw (r\"\"\"...\"\"\"): " + repr(found)
