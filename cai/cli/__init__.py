"""The `cai` command. Each command parses its options and calls one library function.

Heavy libraries (llama.cpp, torch, trl) are imported inside the commands that need them, so
`cai --help` stays instant.
"""

from __future__ import annotations

import sys
import warnings

import click
from rich.markup import escape

from cai.cli import batch, data, datasets, loop, review, tools, train
from cai.cli.options import err, show_error
from cai.errors import CaiError, CaiWarning, os_problem


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cai-toolkit")
def cli() -> None:
    """cai: Constitutional AI and RLAIF, from principles to preference data to training."""


for command in (data.revise, data.try_, data.sample, data.judge, data.eval_group,
                tools.constitution_group, tools.prompts_group, batch.batch_group,
                train.train_group, datasets.data_group, datasets.report_command,
                loop.loop_group, review.review_group):
    cli.add_command(command)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """cai's own warnings as one line on stderr; others as Python shows them."""
    if issubclass(category, CaiWarning):
        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_warning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_warning = warnings.showwarning


def main() -> None:
    from cai.loop.processes import die_with_parent

    die_with_parent()  # a process a loop started (at any depth) ends with its parent
    warnings.showwarning = _show_warning
    try:
        # Not click's standalone mode: it would turn Ctrl-C (and a `kill`) into "Aborted!"
        # and exit 1, before this could say how to resume.
        code = cli.main(standalone_mode=False)
    except CaiError as e:
        show_error(e)
        sys.exit(2)
    except OSError as e:  # an unwritable folder, a path under a file, a full disk
        show_error(os_problem(e))
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        err.print("[yellow]interrupted; rerun the same command to resume[/]")
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:  # a bad option or argument: one line, as every error
        command = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        show_error(f"{e.format_message()}{command}")
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
