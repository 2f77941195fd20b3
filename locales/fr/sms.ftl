## veriflow SMS verification texts, French. Variables: see en/sms.ftl.
## French CLDR plurals: `one` covers 0 and 1.

verify = { $app_name } : votre code de vérification est { $code }. Il expire dans { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.

login = { $code } est votre code de connexion { $app_name }. Il expire dans { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Ne le partagez jamais.

signup = Bienvenue sur { $app_name } ! Votre code est { $code }. Il expire dans { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.

password-reset = { $app_name } : utilisez { $code } pour réinitialiser votre mot de passe. Il expire dans { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Ce n'est pas vous ? Ignorez ce message.

transaction = { $app_name } : { $code } confirme votre opération. Valable { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Ne le partagez jamais.
