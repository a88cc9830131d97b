import gc

from services.intake.app import GC_YOUNG_THRESHOLD, tune_garbage_collector


async def test_startup_objects_are_frozen_and_young_ones_collected_less_often() -> None:
    threshold = gc.get_threshold()
    try:
        await tune_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
