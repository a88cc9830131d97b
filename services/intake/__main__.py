import sys

from pydantic import ValidationError

from services.intake.app import build, tune_garbage_collector
from shared.config import ConfigError
from shared.envelope import describe_validation_error

try:
    service = build()
except ValidationError as exc:
    sys.exit(f"intake: invalid settings: {describe_validation_error(exc)}")
except ConfigError as exc:
    sys.exit(f"intake: invalid configuration: {exc}")
service.on_startup(tune_garbage_collector)
service.run()
