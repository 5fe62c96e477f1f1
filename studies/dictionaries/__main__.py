import studies.dictionaries as study
from studies.common import study_main

study_main(study)
