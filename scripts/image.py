#!/usr/bin/env python3
"""Proves what a Docker engine would prove about the Dockerfile, on a machine without one.

  image.py build    replays the build stage: copies exactly what its COPY lines copy (after
                    .dockerignore) into a fake root under a temp dir, and runs its RUN lines
                    there with the host's tools (which must be the image's: the same Rust, the
                    same Debian release), the cache-mounted target directory shared with the
                    host's so it stays cheap
  image.py runtime  checks the runtime stage against the binaries the replay built: its base
                    is this machine's Debian release, every apt package it installs exists
                    there, every library `ldd` lists comes from a package it installs (or the
                    base image has), every package it installs is linked (or named below with
                    its reason), it runs as non-root and has a health check
  image.py pins     every image the Dockerfile and docker-compose.yml use is pinned by version

Only the standard library; run it from anywhere (paths are relative to the repository).
Any instruction this script does not know how to replay is an error, never skipped: teach it
the new form, so that a Dockerfile edit that would break the image turns CI red.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Packages the runtime stage may install without any binary linking them, and why.
NOT_LINKED = {
    "ca-certificates": "the system trust store: S3 and HTTPS through rustls with native roots",
}
# Executables the server runs, which the runtime image must have.
EXECUTABLES = {
    "prlimit": "the media worker runs the decoder under prlimit (src/media/sandbox.rs)",
}
# Debian suites (as apt-cache madison names them) that belong to a release.
SUITES = ("{codename}/", "{codename}-updates/", "{codename}-security/")


class Failure(Exception):
    """A check failed; the message says what and how to fix it."""


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions (continuations joined)."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            flags = [w for w in words if w.startswith("--")]
            if flags:
                raise Failure(f"{path.name}:{start}: FROM flags {flags} are not replayed")
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3):
                raise Failure(f"{path.name}:{start}: cannot read FROM {args!r}")
            stages.append(Stage(words[0], name))
            continue
        if not stages:
            if keyword == "ARG":
                raise Failure(f"{path.name}:{start}: ARG before FROM is not replayed")
            raise Failure(f"{path.name}:{start}: {keyword} before FROM")
        stages[-1].instructions.append(Instruction(start, keyword, args))
    if pending:
        raise Failure(f"{path.name}: ends in a line continuation")
    if len(stages) < 2:
        raise Failure(f"{path.name}: expected a build stage and a runtime stage")
    return stages


def split_flags(args: str) -> tuple[list[str], str]:
    """`--flag=value` words at the start of an instruction, and the rest."""
    flags = []
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        flags.append(word)
        rest = rest.lstrip()
    return flags, rest


# ---------------------------------------------------------------------------------------------
# .dockerignore


def ignore_patterns(context: Path) -> list[tuple[bool, re.Pattern[str], str]]:
    """(exception, regex, pattern) for each .dockerignore line, in order (the last match
    wins)."""
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        line = line.lstrip("!").strip()
        line = os.path.normpath(line).lstrip("/")
        if line == ".":
            line = ""
        patterns.append((exception, re.compile(glob_regex(line)), line))
    return patterns


def glob_regex(pattern: str) -> str:
    """Go filepath.Match syntax with `**` (any number of directories), as Docker reads it."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(.*/)?")  # any number of directories, none included
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                raise Failure(f".dockerignore: unclosed [ in {pattern!r}")
            body = pattern[i + 1 : j].replace("\\", "\\\\")
            if body.startswith("^"):
                body = "!" + body[1:]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Whether a context path (or one of its parent directories) is excluded."""
    result = False
    parts = relative.split("/")
    for exception, regex, _ in patterns:
        # A pattern matching a parent directory excludes everything under it.
        for n in range(1, len(parts) + 1):
            if regex.match("/".join(parts[:n])):
                result = not exception
                break
    return result


def context_files(context: Path) -> set[str]:
    """Every file (and symlink) of the build context after .dockerignore, relative paths."""
    patterns = ignore_patterns(context)
    kept = set()
    for directory, dirs, files in os.walk(context):
        rel_dir = os.path.relpath(directory, context)
        rel_dir = "" if rel_dir == "." else rel_dir
        # Directories are walked even when excluded: an exception may re-include a file.
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not ignored(rel, patterns):
                kept.add(rel)
        dirs[:] = [d for d in dirs
                   if not (ignored(f"{rel_dir}/{d}" if rel_dir else d, patterns)
                           and not may_reinclude(f"{rel_dir}/{d}" if rel_dir else d, patterns))]
    return kept


def may_reinclude(directory: str, patterns: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Whether an exception could bring back something under an excluded directory (so the
    walk must go in)."""
    for exception, _, pattern in patterns:
        if not exception:
            continue
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        if literal != pattern and not literal:
            return True
        if pattern.startswith(directory + "/") or literal.startswith(directory + "/"):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# The build stage


class FakeRoot:
    """The container's file system as a directory: `/src` is `<root>/src`."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, container: str) -> Path:
        return self.root / container.lstrip("/")


def copy_into(context: Path, files: set[str], sources: list[str], dest: str, fs: FakeRoot,
              workdir: str, where: str) -> None:
    """Docker COPY semantics for context sources: a directory's contents go into `dest`; files
    go to `dest` (a directory when it ends in `/` or there are several sources)."""
    target = dest if dest.startswith("/") else os.path.join(workdir, dest)
    into_dir = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
    for source in sources:
        source = os.path.normpath(source).lstrip("/")
        if any(c in source for c in "*?["):
            raise Failure(f"{where}: COPY {source}: wildcards are not replayed; name the files")
        matched = sorted(f for f in files if f == source
                         or f.startswith(source.rstrip("/") + "/") or source == ".")
        if not matched:
            raise Failure(f"{where}: COPY {source}: no such file in the build context "
                          "(missing, or excluded by .dockerignore)")
        for rel in matched:
            if source == ".":
                inner = rel
            elif rel == source:
                inner = os.path.basename(rel) if into_dir else ""
            else:
                inner = rel[len(source.rstrip("/")) + 1 :]
            out = fs.path(os.path.join(target, inner)) if inner else fs.path(target)
            out.parent.mkdir(parents=True, exist_ok=True)
            src = context / rel
            if src.is_symlink():
                out.symlink_to(os.readlink(src))
            else:
                shutil.copy2(src, out)


# An absolute path in a shell command: at the start of a word, after `=` or a redirection, or in
# quotes (not in a URL, nor after a variable), and not a device.
ABSOLUTE = re.compile(r"(?<![^\s=<>(;&|'\"])/(?!dev/|proc/)[A-Za-z0-9._*/-]+")


def replay_build(stage: Stage, context: Path, work: Path, target_dir: Path) -> FakeRoot:
    check_rust(stage.image)
    fs = FakeRoot(work / "root")
    fs.root.mkdir(parents=True)
    files = context_files(context)
    workdir = "/"
    env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
    for ins in stage.instructions:
        where = f"Dockerfile:{ins.line}"
        if ins.keyword == "WORKDIR":
            workdir = ins.args if ins.args.startswith("/") else os.path.join(workdir, ins.args)
            fs.path(workdir).mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            flags, rest = split_flags(ins.args)
            if flags:
                raise Failure(f"{where}: COPY {flags} in the build stage is not replayed")
            words = shlex.split(rest)
            if len(words) < 2:
                raise Failure(f"{where}: COPY needs a source and a destination")
            print(f"{where}: COPY {rest}")
            copy_into(context, files, words[:-1], words[-1], fs, workdir, where)
        elif ins.keyword == "RUN":
            flags, command = split_flags(ins.args)
            for flag in flags:
                mount(flag, fs, workdir, target_dir, where)
            if command.startswith("["):
                raise Failure(f"{where}: RUN in exec form is not replayed; use the shell form")
            if re.search(r"\|\|\s*(true|:)\b", command):
                raise Failure(f"{where}: `|| true` would hide a failure the image needs to see")
            mapped = ABSOLUTE.sub(lambda m: str(fs.path(m.group(0))), command)
            print(f"{where}: RUN {command}", flush=True)
            done = subprocess.run(["bash", "-eo", "pipefail", "-c", mapped],
                                  cwd=fs.path(workdir), env=env, check=False)
            if done.returncode != 0:
                raise Failure(f"{where}: RUN failed with status {done.returncode}: the image "
                              "would not build")
        elif ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, _, value = word.partition("=")
                env[key] = value
        elif ins.keyword in ("ARG", "LABEL"):
            raise Failure(f"{where}: {ins.keyword} in the build stage is not replayed")
        else:
            raise Failure(f"{where}: {ins.keyword} in the build stage is not replayed")
    return fs


def mount(flag: str, fs: FakeRoot, workdir: str, target_dir: Path, where: str) -> None:
    """`--mount=type=cache,target=…`: the cargo target directory is the host's (shared, so
    the replay builds incrementally); cargo's registry is the host's cargo home already."""
    if not flag.startswith("--mount="):
        raise Failure(f"{where}: RUN {flag} is not replayed")
    options = dict(part.partition("=")[::2] for part in flag[len("--mount="):].split(","))
    if options.get("type") != "cache" or "target" not in options:
        raise Failure(f"{where}: only cache mounts are replayed: {flag}")
    target = options["target"]
    if target.startswith("/usr/local/cargo/"):
        return
    if os.path.normpath(target) == os.path.normpath(os.path.join(workdir, "target")):
        link = fs.path(target)
        if link.exists() or link.is_symlink():
            raise Failure(f"{where}: {target} exists before the cache mount")
        target_dir.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target_dir.resolve())
        return
    raise Failure(f"{where}: cache mount {target} is not replayed")


def check_rust(image: str) -> None:
    match = re.fullmatch(r"rust:(\d+\.\d+(?:\.\d+)?)-[a-z-]*bookworm", image)
    if not match:
        raise Failure(f"build stage FROM {image}: expected rust:X.Y.Z-slim-bookworm")
    want = match.group(1)
    have = subprocess.run(["rustc", "--version"], capture_output=True, text=True,
                          check=True).stdout.split()[1]
    if have != want and not have.startswith(want + "."):
        raise Failure(f"the image builds with Rust {want} and this machine has {have}: the "
                      "replay cannot prove the image builds. Pin the Dockerfile to this Rust "
                      "(and check it exists as a rust image tag)")
    print(f"Rust {have} here, {want} in the image")


# ---------------------------------------------------------------------------------------------
# The runtime stage


def host_release() -> tuple[str, str]:
    fields = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value.strip('"')
    return fields.get("VERSION_ID", ""), fields.get("VERSION_CODENAME", "")


def check_base(image: str, version: str, codename: str) -> None:
    match = re.fullmatch(r"debian:(\d+)(?:\.\d+)?-slim|debian:([a-z]+)(?:-\d+)?-slim", image)
    if not match:
        raise Failure(f"runtime stage FROM {image}: expected debian:N.M-slim")
    release = match.group(1) or match.group(2)
    if release not in (version, codename):
        raise Failure(f"the runtime image is Debian {release} and this machine is Debian "
                      f"{version} ({codename}): its packages cannot be checked here")


def apt_packages(command: str) -> list[str]:
    """The packages every `apt-get install` in a shell command names."""
    packages = []
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
            packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def in_release(package: str, codename: str) -> bool:
    out = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True,
                         check=False).stdout
    suites = [s.format(codename=codename) for s in SUITES]
    return any(f" {suite}" in line for line in out.splitlines() for suite in suites)


def closure(packages: list[str]) -> set[str]:
    """The packages and everything they depend on, recursively."""
    if not packages:
        return set()
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
        capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines()
            if line and not line.startswith(" ") and not line.startswith("<")}


def base_packages() -> set[str]:
    """What every Debian image has: the essential and required packages and their needs."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Essential}\t${Priority}\n"],
                         capture_output=True, text=True, check=True).stdout
    seeds = [p for p, essential, priority in (line.split("\t") for line in out.splitlines())
             if essential == "yes" or priority == "required"]
    return closure(seeds)


def packages_of(paths: set[str]) -> dict[str, str]:
    """The Debian package each file belongs to (one `dpkg -S` for them all), by the path given;
    a file no package has is left out. A path may be known by its real path, or with or
    without `/usr` (merged /usr)."""
    variants = {}
    for path in paths:
        for p in {path, os.path.realpath(path)}:
            variants[p] = path
            variants[p[4:] if p.startswith("/usr/") else "/usr" + p] = path
    done = subprocess.run(["dpkg", "-S", *sorted(variants)], capture_output=True, text=True,
                          check=False)
    found = {}
    for line in done.stdout.splitlines():
        package, _, file = line.partition(": ")
        if file in variants and "," not in package:
            found[variants[file]] = package.split(":")[0].strip()
    return found


def linked(binary: Path) -> dict[str, str]:
    """soname → resolved path of what `ldd` lists for a binary."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = {}
    for line in out.splitlines():
        line = line.strip()
        if "=>" not in line:
            continue  # the vDSO and the dynamic loader
        name, _, rest = line.partition("=>")
        rest = rest.strip()
        if rest.startswith("not found"):
            raise Failure(f"{binary.name} links {name.strip()}, which this machine lacks")
        libs[name.strip()] = rest.split(" (")[0]
    return libs


def check_runtime(stages: list[Stage], fs: FakeRoot) -> None:
    version, codename = host_release()
    runtime = stages[-1]
    check_base(runtime.image, version, codename)
    builders = {s.name: s for s in stages[:-1] if s.name}
    explicit: list[str] = []
    binaries: dict[str, Path] = {}
    user = None
    health = None
    entrypoint = None
    for ins in runtime.instructions:
        where = f"Dockerfile:{ins.line}"
        if ins.keyword == "RUN":
            explicit += apt_packages(ins.args)
        elif ins.keyword == "COPY":
            flags, rest = split_flags(ins.args)
            source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if source_stage not in builders:
                raise Failure(f"{where}: the runtime stage copies only from a build stage")
            words = shlex.split(rest)
            for source in words[:-1]:
                built = fs.path(source)
                if not built.is_file():
                    raise Failure(f"{where}: the build stage made no {source}")
                dest = words[-1]
                name = os.path.basename(source) if dest.endswith("/") else os.path.basename(dest)
                binaries[name] = built
        elif ins.keyword == "USER":
            user = ins.args.split(":")[0]
        elif ins.keyword == "HEALTHCHECK":
            health = ins.args
        elif ins.keyword == "ENTRYPOINT":
            entrypoint = json.loads(ins.args)[0]
    if user in (None, "root", "0"):
        raise Failure("the runtime stage must run as a non-root USER")
    if not health or "CMD" not in health:
        raise Failure("the runtime stage must have a HEALTHCHECK")
    for name, program in (("ENTRYPOINT", entrypoint),
                          ("HEALTHCHECK", re.search(r'CMD \["([^"]+)"', health or ""))):
        program = program.group(1) if isinstance(program, re.Match) else program
        if not program or os.path.basename(program) not in binaries:
            raise Failure(f"the {name} runs {program!r}, which the runtime stage does not copy")

    missing = [p for p in explicit if not in_release(p, codename)]
    if missing:
        raise Failure(f"Debian {codename} has no package {', '.join(missing)}")
    base = base_packages()
    allowed = closure(explicit) | base
    used: set[str] = set()
    problems = []
    links = {name: linked(binary) for name, binary in sorted(binaries.items())}
    programs = {program: shutil.which(program) for program in EXECUTABLES}
    owners = packages_of({p for libs in links.values() for p in libs.values()}
                         | {p for p in programs.values() if p})
    for name, libs in links.items():
        for soname, path in sorted(libs.items()):
            package = owners.get(path)
            if package is None:
                problems.append(f"{name} links {soname} ({path}), which no Debian package has")
                continue
            used.add(package)
            if package not in allowed:
                problems.append(f"{name} links {soname} from {package}, which the runtime "
                                "stage does not install")
    for program, why in EXECUTABLES.items():
        path = programs[program]
        package = owners.get(path) if path else None
        if package not in allowed:
            problems.append(f"the runtime image lacks {program} ({why})")
    for package in explicit:
        if package not in used and package not in NOT_LINKED:
            problems.append(f"the runtime stage installs {package}, which nothing links: drop it "
                            "(or name it in NOT_LINKED in scripts/image.py with its reason)")
    if problems:
        raise Failure("\n".join(problems))
    print(f"runtime stage: Debian {codename}; installs {' '.join(explicit)}")
    print(f"linked packages: {' '.join(sorted(used))}")
    print(f"not linked, on purpose: {', '.join(f'{p} ({w})' for p, w in NOT_LINKED.items())}")


# ---------------------------------------------------------------------------------------------
# Pins


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', text, re.M | re.S)
    if not match:
        raise Failure("Cargo.toml: no [workspace.package] version")
    return match.group(1)


def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def check_pins(stages: list[Stage], compose: Path) -> None:
    problems = [f"Dockerfile: FROM {s.image} is not pinned by version"
                for s in stages if not pinned(s.image)]
    version = cargo_version()
    for number, line in enumerate(compose.read_text().splitlines(), 1):
        match = re.match(r"\s*image:\s*(\S+)", line)
        if not match:
            continue
        image = match.group(1).strip("\"'")
        if not pinned(image):
            problems.append(f"{compose.name}:{number}: image {image} is not pinned by version")
        elif image.startswith("sealpost:") and image != f"sealpost:{version}":
            problems.append(f"{compose.name}:{number}: image {image} is not sealpost:{version} "
                            "(the version in Cargo.toml)")
    if problems:
        raise Failure("\n".join(problems))
    print(f"every image is pinned; sealpost's is sealpost:{version}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "runtime", "pins"])
    parser.add_argument("--work", type=Path,
                        help="the replay's directory (build: made fresh; runtime: the build's)")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile",
                        help="another Dockerfile (its self-test; the context stays this one)")
    args = parser.parse_args()
    dockerfile = args.dockerfile
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    try:
        stages = parse_dockerfile(dockerfile)
        if args.command == "pins":
            check_pins(stages, ROOT / "docker-compose.yml")
            return 0
        work = args.work or Path(tempfile.mkdtemp(prefix="sealpost-image."))
        if args.command == "build":
            if work.exists() and any(work.iterdir()):
                raise Failure(f"{work} is not empty")
            if len(stages) != 2:
                raise Failure("the replay knows one build stage and the runtime stage")
            replay_build(stages[0], ROOT, work, target_dir)
            print(f"build stage replayed in {work}")
        else:
            check_runtime(stages, FakeRoot(work / "root"))
    except Failure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
