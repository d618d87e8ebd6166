from services.tts.service import run

run()
