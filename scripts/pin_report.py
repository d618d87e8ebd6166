"""Prints `name==version` for each package in a `pip install --report` JSON file."""

import json
import sys

report = json.load(open(sys.argv[1]))
pins = sorted((item["metadata"]["name"], item["metadata"]["version"]) for item in report["install"])
for name, version in sorted(pins, key=lambda p: p[0].lower()):
    print(f"{name}=={version}")
