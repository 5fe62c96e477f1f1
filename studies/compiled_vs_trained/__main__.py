import studies.compiled_vs_trained as study
from studies.common import study_main

study_main(study)
