## veriflow SMS verification texts, Arabic (right-to-left). Variables: see en/sms.ftl.
## Arabic CLDR plurals: zero (0), one (1), two (2), few (3–10), many (11–99), other.

verify = رمز التحقق الخاص بك في { $app_name } هو { $code }. تنتهي صلاحيته خلال { $minutes ->
        [zero] أقل من دقيقة
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
        [many] { $minutes } دقيقة
       *[other] { $minutes } دقيقة
    }.

login = { $code } رمز الدخول إلى { $app_name }. صالح لمدة { $minutes ->
        [zero] أقل من دقيقة
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
        [many] { $minutes } دقيقة
       *[other] { $minutes } دقيقة
    }. لا تشاركه.

signup = مرحبًا بك في { $app_name }! رمزك هو { $code }. تنتهي صلاحيته خلال { $minutes ->
        [zero] أقل من دقيقة
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
        [many] { $minutes } دقيقة
       *[other] { $minutes } دقيقة
    }.

password-reset = { $app_name }: رمز تغيير كلمة المرور { $code }. صالح لمدة { $minutes ->
        [zero] أقل من دقيقة
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
        [many] { $minutes } دقيقة
       *[other] { $minutes } دقيقة
    }.

transaction = { $app_name }: الرمز { $code } لتأكيد عمليتك. صالح لمدة { $minutes ->
        [zero] أقل من دقيقة
        [one] دقيقة واحدة
        [two] دقيقتين
        [few] { $minutes } دقائق
        [many] { $minutes } دقيقة
       *[other] { $minutes } دقيقة
    }. لا تشاركه.
