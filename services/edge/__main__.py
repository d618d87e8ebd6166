from services.edge.service import run

run()
