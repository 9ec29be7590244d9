import Any4
