"""Applications above the core API: the runners of the file verbs (`leanface detect / embed / identify /
demo` over files, folders, list files and videos), bulk runs on Ray (detection and gallery enrolment) and
the timing helpers of `leanface bench` and bench/. They compose `infer` and `recognize`; nothing below
imports them."""
