"""Regenerate the committed protobuf/gRPC code from proto/.

    python -m decision.protogen            # write decision/nba/v1/*_pb2*.py
    python -m decision.protogen --check    # exit 1 if the committed code is stale

The proto file lives at proto/nba/v1/ and is compiled under the virtual path
`decision/nba/v1/`, so the generated imports (`from decision.nba.v1 import
...`) match where the modules live: no sys.path tricks, no rewriting.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = Path("decision") / "nba" / "v1"


def _protos() -> list[Path]:
    return sorted((PROTO_DIR / "nba" / "v1").glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    (out_root / OUT_PACKAGE).mkdir(parents=True, exist_ok=True)
    for pkg in (out_root / "decision" / "nba", out_root / OUT_PACKAGE):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text("")
    files = [f"decision/nba/v1/{p.name}" for p in _protos()]
    args = [
        "protoc",
        f"--proto_path=decision={PROTO_DIR}",
        f"--proto_path={include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / OUT_PACKAGE).iterdir() if p.suffix in (".py", ".pyi") and p.name != "__init__.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed code differs")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(ROOT):
            print(path.relative_to(ROOT))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = [p.name for p in fresh if not (ROOT / OUT_PACKAGE / p.name).exists()
                 or not filecmp.cmp(p, ROOT / OUT_PACKAGE / p.name, shallow=False)]
    if stale:
        print("generated code is stale, run `python -m decision.protogen`: " + ", ".join(stale), file=sys.stderr)
        return 1
    print("generated code is fresh")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
