"""The README's model table, generated from the registry and the model cards.

`python -m vidcolor.docs` rewrites the table in README.md; a test checks it is current.
"""

from __future__ import annotations

import pathlib
import re

from .models import DEFAULT_MODEL, get_model, list_models, shipped_dir

START, END = "<!-- models:start -->", "<!-- models:end -->"


def models_markdown() -> str:
    rows = ["| model | what | input (short side) | parameters | weights | card |",
            "|---|---|---|---|---|---|"]
    for name in list_models():
        spec = get_model(name)
        shipped = spec.weights is not None and (shipped_dir() / spec.weights).is_file()
        weights = f"shipped: `models/{spec.weights}`" if shipped else "none shipped: `--weights FILE`"
        card = shipped_dir() / f"{name}.md"
        card_link = f"[card](models/{name}.md)" if card.is_file() else ""
        label = f"`{name}` (default)" if name == DEFAULT_MODEL else f"`{name}`"
        rows.append(f"| {label} | {spec.summary} | {spec.working_size} | {spec.params / 1e6:.2f} M | {weights} | {card_link} |")
    return "\n".join(rows)


def update_readme(path: pathlib.Path) -> bool:
    text = path.read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{models_markdown()}\n{END}",
                 text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    print("updated" if update_readme(readme) else "up to date", readme)
