#!/usr/bin/env python3
"""Check peercache's OpenAPI document, and real responses against it.

    openapi_check.py SPEC [ROUTE METHOD STATUS BODY_FILE]...

SPEC must be a valid OpenAPI 3 document (openapi-spec-validator). Each response body (a
JSON file) must conform to the schema the document gives for that route, method and
status under application/json (openapi-schema-validator, OAS 3.0 rules). Prints one JSON
object: {"spec": "valid", "checked": N}; exits 1 with the first failure on stderr.
"""
import json
import sys

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec


def main(argv):
    if len(argv) < 2 or (len(argv) - 2) % 4:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    validate_spec(spec)
    checked = 0
    args = argv[2:]
    for i in range(0, len(args), 4):
        route, method, status, body_file = args[i:i + 4]
        op = spec["paths"][route][method.lower()]
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        # Resolve "#/components/..." against a root that carries the components.
        root = dict(schema)
        root["components"] = spec["components"]
        with open(body_file) as f:
            body = json.load(f)
        errors = sorted(OAS30Validator(root).iter_errors(body), key=str)
        if errors:
            print(f"{method} {route} {status} ({body_file}): {errors[0].message} at "
                  f"{list(errors[0].absolute_path)}", file=sys.stderr)
            return 1
        checked += 1
    print(json.dumps({"spec": "valid", "checked": checked}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
