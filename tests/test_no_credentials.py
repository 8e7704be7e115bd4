"""No committed file of the cluster and study configurations holds something that looks like a
credential: the placeholders (<...>) are what users fill in, on their own machines."""

import re

import pytest

from tests.conftest import REPO

PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"(?i)aws_secret_access_key\s*[:=]"),
    "AWS account id in an ARN": re.compile(r"arn:aws:[a-z0-9-]*:[a-z0-9-]*:\d{12}:"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"\s*:"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "password or token value": re.compile(r"(?i)\b(password|passwd|secret|token|api_key)\b\s*[:=]\s*['\"]?[A-Za-z0-9/+_\-]{8,}"),
}
SCANNED = sorted(p for folder in ("cluster", "search_spaces") for p in (REPO / folder).rglob("*") if p.is_file())


def findings(text: str) -> list[str]:
    return [name for name, pattern in PATTERNS.items() if pattern.search(text)]


@pytest.mark.parametrize("path", SCANNED, ids=[str(p.relative_to(REPO)) for p in SCANNED])
def test_no_key_like_strings(path):
    assert findings(path.read_text(errors="replace")) == []


@pytest.mark.parametrize(
    "leak",
    [
        "aws_access_key_id: AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG",
        "Arn: arn:aws:iam::123456789012:instance-profile/ray",
        '{"type": "service_account", "private_key": "..."}',
        "api_key: AIzaSyA1234567890abcdefghijklmnopqrstuv",
        "password: hunter2hunter2",
    ],
)
def test_the_scan_catches_a_leak(leak):
    assert findings(leak), leak
