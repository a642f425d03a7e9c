from macrohard.cli import app

app(prog_name="macrohard")
