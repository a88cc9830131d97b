from services.followup.app import build

build().run()
