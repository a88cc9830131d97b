from services.insights.app import build

build().run()
