from services.router.app import build

build().run()
