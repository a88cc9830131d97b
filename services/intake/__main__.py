from services.intake.app import build, tune_garbage_collector

service = build()
service.on_startup(tune_garbage_collector)
service.run()
