from services.intake.app import build

build().run()
