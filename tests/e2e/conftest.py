"""Shared by every end-to-end suite: each response seen is checked against the API's
OpenAPI document (see openapi_check.py); a test that saw one that does not match fails
at teardown with the list of mismatches."""
import pytest

import openapi_check
import stack  # noqa: F401  (loads the stack's addresses before the checker reads them)

openapi_check.install()


@pytest.fixture(autouse=True)
def responses_match_the_openapi_document():
    openapi_check.take_failures()
    yield
    failures = openapi_check.take_failures()
    if failures:
        shown = "\n  ".join(failures[:20])
        more = f"\n  (and {len(failures) - 20} more)" if len(failures) > 20 else ""
        pytest.fail(f"responses that do not match docs/api/openapi.yaml:\n  {shown}{more}", pytrace=False)
