"""Each parameter is written once in code: the field of its section's schema (beside params.yaml
and the profiles). Every key of those files is such a field (the files validate, and unknown keys
are refused: tests/integration/reliability/test_bad_input.py); here: no field is declared twice, and no
module reads a raw section of params.yaml by key instead of through its schema."""

import re
import typing

from conftest import REPO
from pydantic import BaseModel

from metagmvae.schema.params import Params

DISCRIMINATORS = {"kind", "method"}  # narrowed to one tag by each member of a union: once per member


def schemas(root=Params) -> set[type[BaseModel]]:
    """Every section class reachable from ``root`` through its fields (unions, dicts, lists)."""
    found, todo = set(), [root]
    while todo:
        node = todo.pop()
        if isinstance(node, type) and issubclass(node, BaseModel):
            if node not in found:
                found.add(node)
                todo += [field.annotation for field in node.model_fields.values()]
        else:
            todo += list(typing.get_args(node))
    return found


def test_every_field_is_declared_by_one_class():
    classes = schemas()
    assert {"TrainConfig", "PretrainConfig", "EvalConfig", "LasiumRun", "FeaturesModel"} <= {
        c.__name__ for c in classes
    }
    fields = 0
    for cls in classes:
        for name in cls.model_fields:
            owners = [base.__name__ for base in cls.__mro__ if name in vars(base).get("__annotations__", {})]
            fields += 1
            assert len(owners) == 1 or name in DISCRIMINATORS, f"{cls.__name__}.{name} is declared by {owners}"
    assert fields > 150  # the whole file: about 200 (section, key) pairs


RAW_ACCESS = re.compile(r"params\[\"|(?<![\w.])section\(params|load_params\(")
ALLOWED = {  # modules that read the raw file on purpose
    "metagmvae/runtime/config.py": "reads the file",
    "metagmvae/schema/params.py": "parses it into the schemas",
    "metagmvae/cli/validate.py": "reads the file named on its command line, with --set overrides",
    "metagmvae/schema/report.py": "the report stage parses its one section",
    "metagmvae/cli/profile.py": "merges profiles and --set overrides into the raw file",
    "metagmvae/analysis/report.py": "the report reads which related run is on which dataset",
}


def test_no_module_reads_a_raw_section_by_key():
    offenders = []
    for path in sorted([*(REPO / "metagmvae").rglob("*.py"), *(REPO / "stages").glob("*.py")]):
        rel = path.relative_to(REPO).as_posix()
        if rel not in ALLOWED and RAW_ACCESS.search(path.read_text()):
            offenders.append(rel)
    assert offenders == []
