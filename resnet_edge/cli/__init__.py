"""The ``resnet-edge`` command line: a thin layer that parses options, calls the library and prints.

The root group below registers the command modules (:mod:`~resnet_edge.cli.host`, :mod:`~resnet_edge.cli.edge`,
:mod:`~resnet_edge.cli.devices`); they import the shared options (:mod:`~resnet_edge.cli.options`) and one
rendering module (:mod:`~resnet_edge.cli.render`), never this one. Every user error is a
:class:`~resnet_edge.errors.ResnetEdgeError` raised by the library; the group turns it into one line on stderr
and exit code 1, without a traceback. Host-side modules (TensorFlow) are imported inside the commands that need
them, so ``--help``, ``models`` and the edge-side commands start fast and run without TensorFlow.
"""

from __future__ import annotations

import sys

import click

from resnet_edge import __version__
from resnet_edge.cli import devices, edge, host, run, search
from resnet_edge.cli.options import CONTEXT
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.ui import safe_text


class Group(click.Group):
    """A click group that reports library errors as one clean line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ResnetEdgeError as exc:  # messages may quote a file or a device: escaped, bounded, one line
            raise click.ClickException(safe_text(exc, 2000)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise click.ClickException(safe_text(f"{exc.strerror or exc}{where}", 2000)) from None


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(__version__, "--version", "-V", prog_name="resnet-edge")
def cli():
    """resnet-edge: the ResNets of He et al. (2015), from the paper to Raspberry Pis and phones.

    \b
    Start with:
      resnet-edge run                                     a recipe (models/): train, optimize, convert, validate, report
      resnet-edge search --budget 20ms --target pi5       the most accurate ResNet under a budget on your device
      resnet-edge models                                  the family, with parameters and MACs
      resnet-edge build --depth 18                        a ResNet-18 as a Keras model
      resnet-edge train --model resnet20 --out runs/r20   the paper's recipe on the bundled digits
      resnet-edge convert runs/r20/model.keras --int8     a checked, self-describing .tflite
      resnet-edge inspect runs/r20/model_int8.tflite      what the .tflite holds and which accelerator runs it
      resnet-edge metadata other.tflite --labels l.txt    standard metadata, for MediaPipe and the Task Library
      resnet-edge bench runs/r20/model_int8.tflite        latency and memory (benchmark_model's figures)
      resnet-edge eval runs/r20/model_int8.tflite         accuracy on the data, per class, against Keras
      resnet-edge bench m.tflite --target ssh://pi@pi5    the same on a Raspberry Pi (adb://SERIAL: a phone)
      resnet-edge sweep a.tflite b.tflite --target pi5    many models, many devices, into the results store
    """


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="resnet-edge")



for _module in (host, edge, devices, run, search):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
