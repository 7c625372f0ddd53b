"""Run folders and the small HTML report."""
from .plots import log_chart
from .png import image_grid, line_plot, write_png
from .run_folder import Row, new_run_dir, write_run

__all__ = ["Row", "image_grid", "line_plot", "log_chart", "new_run_dir", "write_png", "write_run"]
