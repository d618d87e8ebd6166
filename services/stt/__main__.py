from services.stt.service import run

if __name__ == "__main__":
    run()
