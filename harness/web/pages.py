"""The HTML pages (Jinja templates, autoescaped) and a small Markdown reader for exercise texts:
headings, paragraphs, lists, code blocks and inline code, everything else shown as text."""

from __future__ import annotations

import html
import re
from typing import Any

import jinja2
from markupsafe import Markup

_env = jinja2.Environment(loader=jinja2.PackageLoader("harness.web", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined)


def render(template: str, **values: Any) -> str:
    return _env.get_template(template).render(**values)


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else re.sub(r"\*\*([^*]+)\*\*|\*([^*\s][^*]*)\*",  # **strong**, *emphasis* (escaped already)
                               lambda m: f"<strong>{m[1]}</strong>" if m[1] else f"<em>{m[2]}</em>", html.escape(p))
                   for p in parts)


def markdown(text: str) -> Markup:
    """The exercise's README as HTML; every character of it escaped, only the structure is markup."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
    for line in text.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
                code = None
            else:
                code.append(line)
        elif line.startswith("```"):
            flush()
            code = []
        elif m := re.match(r"(#{1,4})\s+(.*)", line):
            flush()
            level = len(m.group(1)) + 1
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif m := re.match(r"\s*[-*]\s+(.*)", line):
            if para:
                flush()
            items.append(m.group(1))
        elif not line.strip():
            flush()
        elif items and line.startswith("  "):
            items[-1] += " " + line.strip()
        else:
            para.append(line.strip())
    if code is not None:
        out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
    flush()
    return Markup("\n".join(out))


def api_reference(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAPI document as rows for the /docs page: method, path, who may call it, what it does,
    the body's fields."""
    schemas = spec.get("components", {}).get("schemas", {})
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            ref = (op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                   .get("$ref", ""))
            body = schemas.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}) if ref else {}
            fields = [f"{k}: {v.get('type', 'string')}" + (f" ({v['description']})" if v.get("description") else "")
                      for k, v in body.items()]
            rows.append({"method": method.upper(), "path": path, "scope": (op.get("tags") or ["-"])[0],
                         "summary": op.get("summary", ""), "fields": fields})
    return rows
