"""Unit tests of the collection's module utilities: the TOML writer (checked by reading its
output back with Python's tomllib, and by vfio-gen itself) and the rebuilding of each file's
before/after from vfio-gen's plan (checked against the plan's SHA-256 digests, on every
profile of the repository and its fixture root). Run by tests/run.sh with VFIO_GEN_BIN set."""

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
import unittest
from pathlib import Path

from ansible_collections.vfio_gen.vfio_gen.plugins.module_utils import runner
from ansible_collections.vfio_gen.vfio_gen.plugins.module_utils.toml_writer import (
    TomlWriteError,
    dumps,
    quote_string,
)

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ["VFIO_GEN_BIN"]
PAIRS = sorted(
    (p, REPO / "tests/fixtures/roots" / p.stem)
    for p in (REPO / "profiles").glob("*.toml")
    if (REPO / "tests/fixtures/roots" / p.stem).is_dir()
)


def vfio_gen(*args, ok=(0,)):
    p = subprocess.run([BIN, "--color", "never", *map(str, args)], capture_output=True, text=True)
    if p.returncode not in ok:
        raise AssertionError("vfio-gen %s exited %d: %s" % (" ".join(map(str, args)), p.returncode, p.stderr))
    return p


class TomlWriter(unittest.TestCase):
    def roundtrip(self, doc):
        text = dumps(doc)
        self.assertEqual(tomllib.loads(text), doc, text)
        self.assertTrue(text.endswith("\n") and not text.endswith("\n\n"), text)
        return text

    def test_every_control_character_and_the_quotes_are_escaped(self):
        every = "".join(chr(c) for c in range(0x20)) + "\x7f" + '"\\' + "é ✓ \U0001F600"
        text = self.roundtrip({"t": {"s": every, every: "key"}})
        self.assertEqual(len(text.splitlines()), 3, text)  # no raw newline inside a string

    def test_named_escapes_are_used(self):
        self.assertEqual(quote_string('a"b\\c\nd\te\r\b\f'), '"a\\"b\\\\c\\nd\\te\\r\\b\\f"')
        self.assertEqual(quote_string("\x00\x1f\x7f"), '"\\u0000\\u001F\\u007F"')

    def test_keys_bare_or_quoted(self):
        text = self.roundtrip({"systemd-boot": {"entries": []}, "a.b": {"c d": True, "": 1}})
        self.assertIn("[systemd-boot]\n", text)
        self.assertIn('["a.b"]\n', text)
        self.assertIn('"c d" = true\n', text)

    def test_values_tables_and_arrays_of_tables(self):
        self.roundtrip({
            "top": 1, "f": 1.5, "neg": -3, "b": False, "inf": float("inf"),
            "host": {"cpu": "amd"}, "empty": {},
            "nested": {"x": 1, "deeper": {"y": [1, 2], "deepest": {"z": "w"}}},
            "arr": [{"a": 1, "sub": {"b": 2}}, {"a": 2}],
            "mixed": [{"inline": True}, "s", [1, [2]]],
        })

    def test_plain_keys_come_before_sub_tables(self):
        text = dumps({"t": {"sub": {"x": 1}, "late": 2}})
        self.assertLess(text.index("late = 2"), text.index("[t.sub]"), text)

    def test_null_and_other_types_are_errors_naming_the_key(self):
        with self.assertRaisesRegex(TomlWriteError, r"^kernel\.version is null"):
            dumps({"kernel": {"version": None}})
        with self.assertRaisesRegex(TomlWriteError, r"vfio\.ids\.\[1\] has a value of type object"):
            dumps({"vfio": {"ids": ["a", object()]}})
        with self.assertRaisesRegex(TomlWriteError, "key 1 is not a string"):
            dumps({"vfio": {1: "x"}})

    def test_a_comment_goes_first(self):
        text = dumps({"host": {"cpu": "amd"}}, comment="one\n\ntwo")
        self.assertTrue(text.startswith("# one\n#\n# two\n"), text)
        self.assertEqual(tomllib.loads(text), {"host": {"cpu": "amd"}})

    def test_every_profile_of_the_repository_gives_vfio_gen_the_same_plan(self):
        self.assertGreater(len(PAIRS), 5)
        with tempfile.TemporaryDirectory() as tmp:
            for profile, root in PAIRS:
                with self.subTest(profile=profile.name):
                    doc = tomllib.loads(profile.read_text())
                    written = Path(tmp) / profile.name
                    written.write_text(self.roundtrip(doc))
                    want = json.loads(vfio_gen("--root", root, "plan", "-p", profile, "--format", "json").stdout)
                    got = json.loads(vfio_gen("--root", root, "plan", "-p", written, "--format", "json").stdout)
                    self.assertEqual(got, want)


class RebuildFromPlan(unittest.TestCase):
    def check_plan(self, root, plan):
        n = 0
        for c in plan["changes"]:
            if c["action"] == "unchanged":
                continue
            before = b""
            if c["old_sha256"]:
                before = Path(runner.resolve_in_root(str(root), c["path"])).read_bytes()
                self.assertEqual(runner.sha256(before), c["old_sha256"], c["path"])
            if c["new_sha256"]:
                after = runner.apply_unified_diff(before, c["diff"])
                self.assertEqual(runner.sha256(after), c["new_sha256"], c["path"] + "\n" + c["diff"])
            n += 1
        return n

    def test_every_diff_of_every_profile_apply_and_revert(self):
        files = 0
        with tempfile.TemporaryDirectory() as tmp:
            for profile, fixture in PAIRS:
                with self.subTest(profile=profile.name):
                    root = Path(tmp) / profile.stem
                    shutil.copytree(fixture, root, symlinks=True)
                    plan = json.loads(vfio_gen("--root", root, "plan", "-p", profile, "--format", "json").stdout)
                    files += self.check_plan(root, plan)
                    # --force: some fixture roots hold what apply refuses on purpose (a
                    # mkinitcpio preset with ALL_config); the revert's diffs are tested here.
                    vfio_gen("--root", root, "apply", "-p", profile, "--yes", "--hooks", "none", "--force")
                    plan = json.loads(vfio_gen("--root", root, "plan", "-p", profile, "--revert", "--format", "json").stdout)
                    files += self.check_plan(root, plan)
        self.assertGreater(files, 2 * len(PAIRS))

    def test_a_file_without_a_final_newline(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            shutil.copytree(REPO / "tests/fixtures/roots/proxmox-kernel-cmdline", root, symlinks=True)
            cmdline = root / "etc/kernel/cmdline"
            cmdline.write_bytes(cmdline.read_bytes().rstrip(b"\n"))
            profile = REPO / "profiles/proxmox-kernel-cmdline.toml"
            plan = json.loads(vfio_gen("--root", root, "plan", "-p", profile, "--format", "json").stdout)
            diffs = [c["diff"] for c in plan["changes"] if c["path"] == "/etc/kernel/cmdline"]
            self.assertEqual(len(diffs), 1)
            self.assertIn("\\ No newline at end of file", diffs[0])
            self.check_plan(root, plan)

    def test_synthetic_diffs(self):
        before = b"a\nb\nc\n"
        diff = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        self.assertEqual(runner.apply_unified_diff(before, diff), b"a\nB\nc\n")
        diff = "--- a/x\n+++ b/x\n@@ -3 +3 @@\n-c\n+c\n\\ No newline at end of file\n"
        self.assertEqual(runner.apply_unified_diff(before, diff), b"a\nb\nc")
        diff = "--- a/x\n+++ /dev/null\n@@ -1,3 +0,0 @@\n-a\n-b\n-c\n"
        self.assertEqual(runner.apply_unified_diff(before, diff), b"")
        self.assertEqual(runner.apply_unified_diff(b"x\r\ny\r\n", "@@ -2 +2 @@\n-y\r\n+z\r\n"), b"x\r\nz\r\n")
        with self.assertRaises(runner.PatchError):
            runner.apply_unified_diff(before, "@@ -2 +2 @@\n-not b\n+B\n")

    def test_links_resolve_inside_the_root(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "etc/default").mkdir(parents=True)
            (root / "usr/share").mkdir(parents=True)
            (root / "usr/share/grub").write_text("x")
            (root / "etc/default/grub").symlink_to("/usr/share/grub")
            (root / "etc/rel").symlink_to("default/../../usr/share")
            self.assertEqual(runner.resolve_in_root(str(root), "/etc/default/grub"), str(root / "usr/share/grub"))
            self.assertEqual(runner.resolve_in_root(str(root), "/etc/rel/grub"), str(root / "usr/share/grub"))
            self.assertEqual(runner.resolve_in_root(str(root), "/../../etc/default/grub"), str(root / "usr/share/grub"))


if __name__ == "__main__":
    unittest.main()
