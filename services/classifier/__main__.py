from services.classifier.app import build

build().run()
