"""A federation's record on disk: the contract between the simulators that write it
(``gradinv.fl``, the Flower strategy of ``gradinv.record.flower``) and the auditors that read it.
The clients' private batches are read only through ``gradinv.record.private``."""
from .format import Record, RecordMeta, open_record
from .model import ModelDescription, ModelSpec
from .writer import RecordWriter

__all__ = ["ModelDescription", "ModelSpec", "Record", "RecordMeta", "RecordWriter", "open_record"]
