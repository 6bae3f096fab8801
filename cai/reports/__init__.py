"""Reports as files people read: report.json of numbers, and the Markdown and HTML views drawn
from it alone. `render` holds the renderer and `write`; each report's templates and plots sit
beside it here (policy, dataset, loop, constitution_diff, calibration)."""
