#!/usr/bin/env python3
"""Summarizes a `bazel test` run from its Build Event Protocol JSON file.

Counts individual test cases from each test target's test.xml (GoogleTest
cases, or one case for non-gtest targets), adds one failure for every test
target that failed to build or produced no result, prints a per-target table
of problems and ends with the line `N passed, N failed[, N skipped]`.
Exit status: 0 only if nothing failed and at least one test passed.
"""
import json
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def count_xml(path):
    """Returns (passed, failed, skipped) for one test.xml, or None."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif (case.find("skipped") is not None or
              case.get("result") == "skipped" or
              case.get("status") == "notrun"):
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main():
    if len(sys.argv) != 2:
        print("usage: summarize_tests.py BEP_JSON_FILE", file=sys.stderr)
        return 2
    test_targets = set()
    completed_ok = {}
    results = {}  # label -> list of (status, xml_path)
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            ev = json.loads(line)
            eid = ev.get("id", {})
            if "targetConfigured" in eid:
                cfg = ev.get("configured", {})
                if "testSize" in cfg:
                    test_targets.add(eid["targetConfigured"]["label"])
            elif "targetCompleted" in eid:
                label = eid["targetCompleted"]["label"]
                completed_ok[label] = ev.get("completed", {}).get("success", False)
            elif "testResult" in eid:
                label = eid["testResult"]["label"]
                tr = ev.get("testResult", {})
                xml = None
                for out in tr.get("testActionOutput", []):
                    if out.get("name") == "test.xml":
                        uri = out.get("uri", "")
                        if uri.startswith("file://"):
                            xml = urllib.parse.unquote(uri[len("file://"):])
                results.setdefault(label, []).append((tr.get("status", "NO_STATUS"), xml))

    passed = failed = skipped = 0
    problems = []
    for label in sorted(test_targets):
        if label not in results:
            if completed_ok.get(label) is False:
                failed += 1
                problems.append(f"{label}: FAILED TO BUILD")
            # else: filtered out (tag filters) or not requested: not counted
            continue
        for status, xml in results[label]:
            counts = count_xml(xml) if xml and os.path.exists(xml) else None
            p, fl, s = counts if counts else (0, 0, 0)
            if status != "PASSED" and fl == 0:
                fl = 1  # timeout, crash or missing XML: the target failed
            if status == "PASSED" and p == 0 and s == 0 and fl == 0:
                p = 1  # a passing target without test cases in its XML
            passed += p
            failed += fl
            skipped += s
            if status != "PASSED" or fl:
                problems.append(f"{label}: {status} ({fl} failed case(s))")
    for p in problems:
        print("  " + p)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
