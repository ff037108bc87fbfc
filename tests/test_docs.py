"""The docs keep their promises: CONFIG.md is generated from the code, the README is short and
links every result folder, each result folder says its command, and no doc names a path of one
machine."""

import pathlib
import re

from sgan_jax import methods
from sgan_jax.training import config as config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def test_config_md_is_generated_from_the_code():
    """Regenerate with `python -m sgan_jax.training.config > docs/CONFIG.md`."""
    text = (DOCS / "CONFIG.md").read_text()
    assert text == config_lib.markdown()
    keys = set(config_lib.harness_defaults())
    for name in methods.names():
        keys |= set(methods.get(name).config_defaults)
    assert {key for key in keys if f"| `{key}` |" not in text} == set()


def test_readme_is_a_short_guide_that_links_every_result_folder():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    folders = sorted(p.name for p in (DOCS / "results").iterdir() if p.is_dir())
    assert [f for f in folders if f"(docs/results/{f})" not in readme] == []


def test_each_result_folder_has_a_readme_with_its_command():
    for folder in sorted(p for p in (DOCS / "results").iterdir() if p.is_dir()):
        readme = folder / "README.md"
        assert readme.exists(), folder.name
        text = readme.read_text()
        assert re.search(r"(python|make) ", text) and "```" in text, folder.name


def test_no_doc_names_a_path_of_one_machine():
    paths = re.compile(r"/work/|/tmp/fresh|/root/|/home/\w+")
    for doc in [REPO / "README.md", *DOCS.rglob("*.md")]:
        found = paths.findall(doc.read_text())
        assert not found, (doc.relative_to(REPO), found)
