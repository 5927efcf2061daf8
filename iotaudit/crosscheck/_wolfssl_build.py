"""Build wolfSSL's *default* configuration (no ``WOLFSSL_ALT_CERT_CHAINS``) from Debian's own source.

Debian builds ``libwolfssl35`` with ``--enable-distro``, which turns on alternative
certificate chains (``configure.ac``: ``--enable-altcertchains``, "default: disabled"), so
Debian's library answers for ``wolfssl-5-alt-chains`` only. For ``wolfssl-5`` (the default
build: every presented certificate must chain) we build the same source package, with
Debian's patches, using wolfSSL's CMake defaults plus SNI (``-DWOLFSSL_SNI=yes``, which an
AWS IoT client needs; it does not touch chain building). ``-Wno-error`` because GCC 12 warns
on ``src/tls.c`` in 5.5.4.

Usage (``.ci/run`` runs the file by path, so any Python 3.11 will do: it imports only the stdlib)::

    python3 iotaudit/crosscheck/_wolfssl_build.py [--if-missing] [DIRECTORY]

The library lands in ``DIRECTORY/libwolfssl.so.35`` (default :data:`DEFAULT_DIRECTORY`), next to
``BUILD.txt`` recording the source version and the CMake options. Needs the Debian packages
``cmake gcc make patch xz-utils`` and access to Debian's source archive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIRECTORY = Path(os.environ.get("IOTAUDIT_WOLFSSL_DEFAULT_DIR",
                                        Path.home() / ".cache" / "iotaudit" / "wolfssl-5-default"))
LIBRARY_NAME = "libwolfssl.so.35"
CMAKE_OPTIONS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=yes", "-DWOLFSSL_EXAMPLES=no",
    "-DWOLFSSL_CRYPT_TESTS=no", "-DWOLFSSL_SNI=yes", "-DCMAKE_C_FLAGS=-Wno-error",
)
APT_DIRECTORY = Path("/etc/apt")


def source_lines(apt_directory: Path = APT_DIRECTORY) -> str:
    """``deb-src`` lines for every ``deb`` archive this machine's apt is configured with.

    The source package comes from the same archives (same mirror, suites and keys) the binary
    ``libwolfssl35`` was installed from, so nothing here names an archive of its own: both the
    one-line format (``sources.list``, ``*.list``) and deb822 (``*.sources``) are read.
    """
    lines: list[str] = []
    one_line = [apt_directory / "sources.list", *sorted((apt_directory / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                words = raw.split("#", 1)[0].split()
                if words[:1] == ["deb"]:
                    lines.append(" ".join(["deb-src", *words[1:]]))
    for path in sorted((apt_directory / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for raw in stanza.splitlines():
                if raw.startswith("#") or ":" not in raw:
                    continue
                key, _, value = raw.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            options = f"[signed-by={fields['signed-by']}] " if fields.get("signed-by", "").startswith("/") else ""
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    lines.append(f"deb-src {options}{uri} {suite} {fields.get('components', '')}".rstrip())
    if not lines:
        raise RuntimeError(f"no deb archive is configured under {apt_directory}: cannot fetch wolfSSL's source")
    return "\n".join(lines) + "\n"


def _run(command: Sequence[str], cwd: Path) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(list(command), cwd=cwd, check=True)


def installed_version() -> str:
    """Debian version of the installed libwolfssl35, so the default build uses the same source."""
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libwolfssl35"], check=True,
                          capture_output=True, text=True).stdout.strip()


def build(directory: Path = DEFAULT_DIRECTORY) -> Path:
    """Fetch Debian's wolfSSL source, apply its patches, build the default configuration.

    Args:
        directory: Where to put ``libwolfssl.so.35`` and ``BUILD.txt``.

    Returns:
        The path of the built library.
    """
    version = installed_version()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iotaudit-wolfssl-") as scratch_text:
        scratch = Path(scratch_text)
        (scratch / "lists" / "partial").mkdir(parents=True)
        (scratch / "sources.list").write_text(source_lines(), encoding="utf-8")
        apt = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={scratch / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={scratch / 'lists'}"]
        _run([*apt, "update"], scratch)
        _run([*apt, "source", "--download-only", f"wolfssl={version}"], scratch)
        upstream = version.split("-")[0]
        _run(["tar", "xf", f"wolfssl_{upstream}.orig.tar.gz"], scratch)
        source = next(path for path in scratch.iterdir() if path.is_dir() and path.name.startswith("wolfssl-"))
        debian_tarball = next(scratch.glob("wolfssl_*.debian.tar.xz"))
        _run(["tar", "xf", str(debian_tarball), "-C", str(source)], scratch)
        series = source / "debian" / "patches" / "series"
        for patch in series.read_text(encoding="ascii").split() if series.is_file() else []:
            _run(["patch", "-p1", "-s", "-i", str(source / "debian" / "patches" / patch)], source)
        build_dir = scratch / "build"
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_OPTIONS], scratch)
        _run(["make", "-j2", "wolfssl"], build_dir)
        target = directory / LIBRARY_NAME
        shutil.copy2(build_dir / LIBRARY_NAME, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").replace(target)
    (directory / "BUILD.txt").write_text(
        f"wolfSSL default build (no WOLFSSL_ALT_CERT_CHAINS) from Debian source wolfssl {version}\n"
        f"cmake {' '.join(CMAKE_OPTIONS)}\n", encoding="utf-8")
    return target


def is_current(directory: Path = DEFAULT_DIRECTORY) -> bool:
    """True when ``directory`` holds a default build of the installed Debian wolfSSL version."""
    notes = directory / "BUILD.txt"
    if not (directory / LIBRARY_NAME).is_file() or not notes.is_file():
        return False
    return f"Debian source wolfssl {installed_version()}\n" in notes.read_text(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build into DIRECTORY (default :data:`DEFAULT_DIRECTORY`); 0 ok, 2 on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when DIRECTORY already holds a build of the installed version")
    args = parser.parse_args(argv)
    try:
        if args.if_missing and is_current(args.directory):
            print(f"{args.directory / LIBRARY_NAME}: up to date")
            return 0
        print(build(args.directory))
    except (OSError, subprocess.CalledProcessError, StopIteration) as err:
        print(f"wolfSSL default build failed: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
