from edgeopt.cli import app

app(prog_name="edgeopt")
