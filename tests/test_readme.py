"""The README's "From Python" example runs as written (the documented import paths stay), and its
top says what `make test` costs."""

import importlib.util
import re
from pathlib import Path

from vsock_fuzz.model.packet import parse

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_from_python_example_runs_against_the_model(tmp_path):
    section = README[README.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    path = tmp_path / "readme_example.py"
    path.write_text(code)  # a real file: Hypothesis reads the test's source
    spec = importlib.util.spec_from_file_location("readme_example", path)
    module = importlib.util.module_from_spec(spec)
    module.my_parse = parse  # the parser the example leaves to the reader
    spec.loader.exec_module(module)
    module.test_my_device()  # the model keeps every rule: no finding above warning


def test_make_test_says_what_it_costs_before_it_is_run():
    top = README[:README.index("## Pointing it at your device")]
    assert "make fuzz    #" in top.splitlines()[3] and "make test    #" in top.splitlines()[4]
    said = " ".join(top.split("```")[2].split())  # the prose right after the two commands
    assert "about 10 minutes on 2 cores" in said and "Rust adapters" in said and "C example" in said
    assert "compiled core" in said
