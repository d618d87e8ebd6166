from services.turns.service import run

run()
