import sys

from pydantic import ValidationError

from services.followup.app import build
from shared.config import ConfigError
from shared.envelope import describe_validation_error

try:
    service = build()
except ValidationError as exc:
    sys.exit(f"followup: invalid settings: {describe_validation_error(exc)}")
except ConfigError as exc:
    sys.exit(f"followup: invalid configuration: {exc}")
service.run()
