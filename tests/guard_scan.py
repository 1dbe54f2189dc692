"""Finds the pyo3 bindings in src/python/ (``#[pyfunction]`` fns and ``#[pymethods]``
methods returning ``PyResult``) and, run as ``python tests/guard_scan.py --wrap FILES``,
wraps each body in ``guard("Name.fn", || { ... })`` (src/python/guard.rs). The test
suite uses :func:`unguarded` to check that none is left out."""

import re
import sys

_FN = re.compile(
    r"(#\[pymethods\]\s*impl\s+(\w+))|(\n([ \t]*)(pub(\([^)]*\))?\s+)?fn\s+(\w+)(<[^>]*>)?\s*\()"
)
_PYCLASS = re.compile(
    r'#\[pyclass\(name\s*=\s*"(\w+)"[^\]]*\]\s*(?:#\[[^\]]*\]\s*)*pub\s+struct\s+(\w+)'
)


def _skip_string(s, i):
    i += 1
    while i < len(s):
        if s[i] == "\\":
            i += 2
        elif s[i] == '"':
            return i + 1
        else:
            i += 1
    raise ValueError("unterminated string")


def _skip_raw_string(s, i):
    m = re.match(r'r(#*)"', s[i:])
    end = s.index('"' + m.group(1), i + len(m.group(0)))
    return end + 1 + len(m.group(1))


def _matching_brace(s, i):
    """The index of the ``}`` closing the ``{`` at ``s[i]``, past strings and comments."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c == '"':
            i = _skip_string(s, i)
            continue
        if c == "r" and re.match(r'r#*"', s[i:]) and not (s[i - 1].isalnum() or s[i - 1] == "_"):
            i = _skip_raw_string(s, i)
            continue
        if c == "'":
            m = re.match(r"'(\\.|[^\\'])'", s[i:])  # a char literal, not a lifetime
            if m:
                i += len(m.group(0))
                continue
        if s.startswith("//", i):
            i = s.index("\n", i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError("unbalanced braces")


def bindings(src):
    """``(body_open, body_close, "Class.method")`` of every binding returning PyResult."""
    names = {rust: py for py, rust in _PYCLASS.findall(src)}
    impl_name, impl_end, found = None, -1, []
    for m in _FN.finditer(src):
        if m.group(1):
            impl_name = names.get(m.group(2), m.group(2).removeprefix("Py"))
            impl_end = _matching_brace(src, src.index("{", m.end()))
            continue
        start, name = m.start(3) + 1, m.group(7)
        body_open = src.index("{", m.end())
        signature = src[m.end() : body_open]
        in_methods = impl_end > start
        attrs = src[max(0, start - 400) : start].split("\n\n")[-1]
        if not (in_methods or "#[pyfunction]" in attrs):
            continue
        if "->" not in signature or "PyResult<" not in signature.split("->")[-1]:
            continue
        if name == "_guard_selftest":
            continue
        found.append(
            (
                body_open,
                _matching_brace(src, body_open),
                f"{impl_name}.{name}" if in_methods else name,
            )
        )
    return found


def unguarded(path):
    """The bindings of ``path`` whose body does not start with ``guard(``."""
    with open(path) as f:
        src = f.read()
    return [q for o, c, q in bindings(src) if not src[o + 1 : c].lstrip().startswith("guard(")]


def wrap(src):
    for body_open, body_close, qual in sorted(bindings(src), reverse=True):
        inner = src[body_open + 1 : body_close]
        if inner.lstrip().startswith("guard("):
            continue
        src = f'{src[: body_open + 1]}\nguard("{qual}", || {{{inner}}})\n{src[body_close:]}'
    if "use super::guard::guard;" not in src:
        src = src.replace(
            "use pyo3::prelude::*;", "use pyo3::prelude::*;\n\nuse super::guard::guard;", 1
        )
    return src


if __name__ == "__main__" and sys.argv[1:2] == ["--wrap"]:
    for path in sys.argv[2:]:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(wrap(text))
